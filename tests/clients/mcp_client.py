"""An MCP client nobody here wrote (Python's official `mcp` SDK) driving Warden's MCP server,
for the end-to-end tests (tests/e2e/mcp.rs). It prints one JSON report on stdout; the Rust test
asserts on it.

    mcp_client.py session --mode legacy|auto|2026-07-28 (--url URL --token TOKEN | -- warden ARGS...)
        list the tools, call `hello` (with a progress token), call `probe` reaching for the
        network (a hostile agent: the host kills it), call `hello` again, call a tool that is not
        there.
    mcp_client.py raw --url URL --token TOKEN
        plain HTTP: no token, a forged token, the resource metadata, a rebinding Host, an origin.
    mcp_client.py cancel --mode legacy|auto --url URL --token TOKEN
        call `probe` spinning until killed, give up after 3 s (the SDK sends
        `notifications/cancelled`), follow the task over the HTTP API until it ends, call `hello`.
    mcp_client.py tasks --url URL --token TOKEN --other-token TOKEN
        the tasks extension (SEP-2663) in plain JSON-RPC (the SDK has no tasks client): a task
        handle for `hello`, polled to its result; a spinning `probe` cancelled with tasks/cancel;
        another user's task and removed methods refused.
    mcp_client.py sampling --mode legacy|auto [--no-sampling] (--url URL --token TOKEN | -- warden ARGS...)
        call `test_sampling` (an agent whose model is the calling client's) with a sampling
        callback that answers and records what it was asked, then `test_missing_capability`;
        with --no-sampling the client declares no `sampling` and each call's error is reported.
    mcp_client.py elicit --mode legacy|auto [--answer accept|decline|cancel|none] (--url URL --token TOKEN | -- warden ARGS...)
        call `test_elicitation` (an agent that asks the person) with an elicitation callback that
        answers as told and records what it was asked (`none`: the client declares no
        `elicitation`).
"""

import argparse
import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def result_json(r):
    texts = [c.text for c in r.content if getattr(c, "type", None) == "text"]
    return {
        "isError": bool(r.is_error),
        "text": "\n".join(texts),
        "structured": r.structured_content,
    }


async def session(args):
    if args.url:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
        server = streamable_http_client(args.url, http_client=http)
    else:
        server = StdioServerParameters(command=args.command[0], args=args.command[1:])
    report = {}
    async with Client(server, mode=args.mode, read_timeout_seconds=60) as client:
        report["protocol"] = client.protocol_version
        listed = await client.list_tools()
        report["tools"] = [
            json.loads(t.model_dump_json(by_alias=True, exclude_none=True)) for t in listed.tools
        ]
        again = await client.list_tools()
        report["same_order"] = [t.name for t in listed.tools] == [t.name for t in again.tools]
        progress = []

        async def on_progress(value, total, message):
            progress.append({"progress": value, "total": total, "message": message})

        names = {t.name for t in listed.tools}
        if "hello" in names:
            r = await client.call_tool("hello", {"input": "mcp"}, progress_callback=on_progress)
            report["hello"] = result_json(r)
            report["progress"] = progress
        if "probe" in names:
            r = await client.call_tool(
                "probe", {"input": {"op": "http", "url": "http://127.0.0.1:1/"}}
            )
            report["hostile"] = result_json(r)
        if "hello" in names:
            r = await client.call_tool("hello", {"input": "again"})
            report["hello_after"] = result_json(r)
        if "probe" not in names:
            # Not listed for this caller: calling it anyway must not run it.
            try:
                r = await client.call_tool("probe", {"input": {"op": "echo", "text": "x"}})
                report["unlisted_probe"] = result_json(r)
            except Exception as e:
                report["unlisted_probe"] = f"error: {e}"
        try:
            await client.call_tool("no-such-agent", {})
            report["unknown"] = "answered"
        except Exception as e:  # the SDK raises an McpError for a JSON-RPC error
            report["unknown"] = f"error: {e}"
    print(json.dumps(report))


async def sampling(args):
    """The agent's model is this client: answer its sampling requests, record them."""
    from mcp import types

    if args.url:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
        server = streamable_http_client(args.url, http_client=http)
    else:
        server = StdioServerParameters(command=args.command[0], args=args.command[1:])
    asked = []

    async def on_sampling(context, params):
        turns = []
        for m in params.messages:
            for block in m.content_as_list:
                turns.append({"role": m.role, "text": getattr(block, "text", None)})
        asked.append(
            {"system": params.system_prompt, "turns": turns, "max_tokens": params.max_tokens}
        )
        last = turns[-1]["text"] if turns else ""
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"the client's answer to: {last}"),
            model="client-test-model",
            stop_reason="endTurn",
        )

    callback = None if args.no_sampling else on_sampling
    report = {"calls": {}}
    async with Client(
        server, mode=args.mode, read_timeout_seconds=60, sampling_callback=callback
    ) as client:
        report["protocol"] = client.protocol_version
        for tool in ("test_sampling", "test_missing_capability"):
            try:
                r = await client.call_tool(tool, {"prompt": "What is 2 + 2?"})
                report["calls"][tool] = result_json(r)
            except Exception as e:
                error = getattr(e, "error", None)
                report["calls"][tool] = {
                    "error": str(e),
                    "code": getattr(error, "code", None),
                    "data": getattr(error, "data", None),
                }
    report["asked"] = asked
    print(json.dumps(report, default=str))


async def elicit(args):
    """The agent asks this client's person: answer as told, record the questions."""
    from mcp import types

    if args.url:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
        server = streamable_http_client(args.url, http_client=http)
    else:
        server = StdioServerParameters(command=args.command[0], args=args.command[1:])
    asked = []

    async def on_elicit(context, params):
        asked.append(json.loads(params.model_dump_json(by_alias=True, exclude_none=True)))
        if args.answer == "accept":
            return types.ElicitResult(
                action="accept", content={"username": "ada", "email": "ada@example.com"}
            )
        return types.ElicitResult(action=args.answer)

    callback = None if args.answer == "none" else on_elicit
    report = {}
    async with Client(
        server, mode=args.mode, read_timeout_seconds=60, elicitation_callback=callback
    ) as client:
        report["protocol"] = client.protocol_version
        try:
            r = await client.call_tool("test_elicitation", {"message": "Who are you?"})
            report["call"] = result_json(r)
        except Exception as e:
            report["call"] = {"error": str(e)}
    report["asked"] = asked
    print(json.dumps(report, default=str))


async def watch(args):
    """List the tools, copy --add-from to --add-to (an agent appears in the agents folder), wait
    for `notifications/tools/list_changed`, list again."""
    import shutil

    changed = anyio.Event()

    async def on_message(message):
        inner = getattr(message, "root", message)
        if getattr(inner, "method", None) == "notifications/tools/list_changed":
            changed.set()

    server = StdioServerParameters(command=args.command[0], args=args.command[1:])
    report = {}
    async with Client(server, mode=args.mode, message_handler=on_message) as client:
        report["before"] = [t.name for t in (await client.list_tools()).tools]
        for src, dst in zip(args.add_from.split(","), args.add_to.split(",")):
            shutil.copy(src, dst)
        with anyio.move_on_after(20):
            await changed.wait()
        report["notified"] = changed.is_set()
        report["after"] = [t.name for t in (await client.list_tools()).tools]
    print(json.dumps(report))


def raw(args):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    host = args.url.split("/")[2]
    report = {}
    with httpx2.Client(timeout=30) as http:
        r = http.post(args.url, json=init, headers=accept)
        report["no_token"] = {"status": r.status_code, "www": r.headers.get("www-authenticate")}
        r = http.post(args.url, json=init, headers={**accept, "Authorization": "Bearer v4.public.forged"})
        report["forged"] = {"status": r.status_code, "www": r.headers.get("www-authenticate")}
        if args.wrong_audience:
            r = http.post(
                args.url, json=init, headers={**accept, "Authorization": f"Bearer {args.wrong_audience}"}
            )
            report["wrong_audience"] = {"status": r.status_code, "body": r.text}
        base = args.url.rsplit("/mcp", 1)[0]
        r = http.get(base + "/.well-known/oauth-protected-resource/mcp")
        report["metadata"] = {"status": r.status_code, "body": r.json()}
        auth = {**accept, "Authorization": f"Bearer {args.token}"}
        r = http.post(args.url, json=init, headers={**auth, "Host": "evil.example.com"})
        report["rebinding_host"] = r.status_code
        # A refusal before the body is read closes the connection, and says so.
        report["rebinding_connection"] = r.headers.get("connection")
        r = http.post(args.url, json=init, headers={**auth, "Host": "mcp.example.com"})
        report["allowed_host"] = r.status_code
        r = http.post(args.url, json=init, headers={**auth, "Origin": "https://app.example.com"})
        report["allowed_origin"] = r.status_code
        r = http.post(args.url, json=init, headers={**auth, "Origin": "http://evil.example.com"})
        report["foreign_origin"] = r.status_code
        r = http.post(args.url, json=init, headers={**auth, "Origin": f"http://{host}"})
        report["loopback_origin"] = r.status_code
    print(json.dumps(report))


def task_row(http, url, token, task):
    """The Warden task row over the HTTP API."""
    base = url.rsplit("/mcp", 1)[0]
    r = http.get(f"{base}/v1/tasks/{task}", headers={"Authorization": f"Bearer {token}"})
    return r.json()


async def cancel(args):
    import re
    import time

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
    server = streamable_http_client(args.url, http_client=http)
    report = {}
    seen = []

    async def on_progress(value, total, message):
        seen.append(message or "")

    async with Client(server, mode=args.mode, read_timeout_seconds=60) as client:
        report["protocol"] = client.protocol_version
        started = time.monotonic()
        try:
            r = await client.call_tool(
                "probe", {"input": {"op": "spin"}}, read_timeout_seconds=3, progress_callback=on_progress
            )
            report["spin"] = result_json(r)
        except Exception as e:
            report["spin"] = f"error: {type(e).__name__}: {e}"
        gave_up = time.monotonic()
        report["gave_up_after_s"] = gave_up - started
        ids = [int(m.group(1)) for m in (re.match(r"task (\d+) accepted", s) for s in seen) if m]
        report["task"] = ids[0] if ids else None
        with httpx2.Client(timeout=30) as plain:
            row = {}
            while ids and time.monotonic() - gave_up < 30:
                row = task_row(plain, args.url, args.token, ids[0])
                if row.get("status") not in ("queued", "running"):
                    break
                await anyio.sleep(0.1)
            report["row"] = row
            report["ended_after_s"] = time.monotonic() - gave_up
        r = await client.call_tool("hello", {"input": "after"})
        report["hello_after"] = result_json(r)
    print(json.dumps(report))


def tasks(args):
    import time

    def rpc(method, params, token=None, declare=True):
        caps = {"extensions": {"io.modelcontextprotocol/tasks": {}}} if declare else {}
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw-tasks", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": caps,
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token or args.token}",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method,
        }
        name = params.get("name") or params.get("taskId")
        if name:
            headers["Mcp-Name"] = name
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
        r = http.post(args.url, json=body, headers=headers)
        text = r.text
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            datas = [l[5:].strip() for l in text.splitlines() if l.startswith("data:")]
            text = [d for d in datas if d][-1]
        answer = json.loads(text)
        return answer.get("result", {"error": answer.get("error")})

    def follow(task_id, token=None):
        got = {}
        until = time.monotonic() + 30
        while time.monotonic() < until:
            got = rpc("tasks/get", {"taskId": task_id}, token)
            if got.get("status") in ("completed", "failed", "cancelled", "input_required"):
                break
            time.sleep(got.get("pollIntervalMs", 200) / 1000 / 5)
        return got

    report = {}
    with httpx2.Client(timeout=30) as http:
        handle = rpc("tools/call", {"name": "hello", "arguments": {"input": "task"}})
        report["handle"] = handle
        report["done"] = follow(handle["taskId"])
        report["sync"] = rpc("tools/call", {"name": "hello", "arguments": {"input": "task"}}, declare=False)
        report["undeclared_get"] = rpc("tasks/get", {"taskId": handle["taskId"]}, declare=False)

        spin = rpc("tools/call", {"name": "probe", "arguments": {"input": {"op": "spin"}}})
        report["spin_handle"] = spin
        time.sleep(1)
        report["spin_running"] = rpc("tasks/get", {"taskId": spin["taskId"]})
        asked = time.monotonic()
        report["spin_cancel"] = rpc("tasks/cancel", {"taskId": spin["taskId"]})
        report["spin_cancelled"] = follow(spin["taskId"])
        report["cancel_took_s"] = time.monotonic() - asked
        report["spin_row"] = task_row(http, args.url, args.token, spin["taskId"])

        other = args.other_token
        report["other_get"] = rpc("tasks/get", {"taskId": handle["taskId"]}, other)
        report["other_cancel"] = rpc("tasks/cancel", {"taskId": handle["taskId"]}, other)
        report["missing_get"] = rpc("tasks/get", {"taskId": "999999"})
        report["list"] = rpc("tasks/list", {})
        report["result"] = rpc("tasks/result", {"taskId": handle["taskId"]})
        report["update"] = rpc("tasks/update", {"taskId": handle["taskId"], "inputResponses": {}})
        report["after"] = rpc("tools/call", {"name": "hello", "arguments": {"input": "after"}}, declare=False)
        report["legacy"] = legacy_tasks(http, args)
    print(json.dumps(report))


def legacy_tasks(http, args):
    """A 2025-11-25 session whose `initialize` declares the tasks extension gets handles too."""
    import time

    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {args.token}",
    }

    def post(body, extra=None):
        r = http.post(args.url, json=body, headers={**headers, **(extra or {})})
        datas = [l[5:].strip() for l in r.text.splitlines() if l.startswith("data:")]
        datas = [d for d in datas if d]
        return r, (json.loads(datas[-1]) if datas else (r.json() if r.text.strip() else None))

    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
            "clientInfo": {"name": "raw-legacy", "version": "0"},
        },
    }
    r, answer = post(init)
    session = {"Mcp-Session-Id": r.headers.get("mcp-session-id", ""), "MCP-Protocol-Version": "2025-11-25"}
    out = {"extensions": answer["result"]["capabilities"].get("extensions")}
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "hello", "arguments": {"input": "legacy"}}}
    _, answer = post(call, session)
    out["handle"] = answer.get("result", answer)
    task_id = out["handle"].get("taskId")
    got = {}
    for i in range(100):
        _, answer = post({"jsonrpc": "2.0", "id": 3 + i, "method": "tasks/get", "params": {"taskId": task_id}}, session)
        got = answer.get("result", answer)
        if got.get("status") != "working":
            break
        time.sleep(0.1)
    out["done"] = got
    http.delete(args.url, headers={**headers, **session})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["session", "raw", "watch", "cancel", "tasks", "sampling", "elicit"])
    p.add_argument("--other-token")
    p.add_argument("--wrong-audience")
    p.add_argument("--add-from")
    p.add_argument("--add-to")
    p.add_argument("--mode", default="auto")
    p.add_argument("--url")
    p.add_argument("--token")
    p.add_argument("--no-sampling", action="store_true")
    p.add_argument("--answer", default="accept")
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.command = command
    if args.what == "raw":
        raw(args)
    elif args.what == "tasks":
        tasks(args)
    elif args.what == "cancel":
        anyio.run(cancel, args)
    elif args.what == "elicit":
        anyio.run(elicit, args)
    elif args.what == "sampling":
        anyio.run(sampling, args)
    elif args.what == "watch":
        anyio.run(watch, args)
    else:
        anyio.run(session, args)


if __name__ == "__main__":
    sys.exit(main())
