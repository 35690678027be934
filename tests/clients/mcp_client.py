"""An MCP client nobody here wrote (Python's official `mcp` SDK) driving Warden's MCP server,
for the end-to-end tests (tests/e2e/mcp.rs). It prints one JSON report on stdout; the Rust test
asserts on it.

    mcp_client.py session --mode legacy|auto|2026-07-28 (--url URL --token TOKEN | -- warden ARGS...)
        list the tools, call `hello` (with a progress token), call `probe` reaching for the
        network (a hostile agent: the host kills it), call `hello` again, call a tool that is not
        there.
    mcp_client.py raw --url URL --token TOKEN
        plain HTTP: no token, a forged token, the resource metadata, a rebinding Host, an origin.
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
        r = http.post(args.url, json=init, headers={**auth, "Host": "mcp.example.com"})
        report["allowed_host"] = r.status_code
        r = http.post(args.url, json=init, headers={**auth, "Origin": "https://app.example.com"})
        report["allowed_origin"] = r.status_code
        r = http.post(args.url, json=init, headers={**auth, "Origin": "http://evil.example.com"})
        report["foreign_origin"] = r.status_code
        r = http.post(args.url, json=init, headers={**auth, "Origin": f"http://{host}"})
        report["loopback_origin"] = r.status_code
    print(json.dumps(report))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["session", "raw", "watch"])
    p.add_argument("--wrong-audience")
    p.add_argument("--add-from")
    p.add_argument("--add-to")
    p.add_argument("--mode", default="auto")
    p.add_argument("--url")
    p.add_argument("--token")
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.command = command
    if args.what == "raw":
        raw(args)
    elif args.what == "watch":
        anyio.run(watch, args)
    else:
        anyio.run(session, args)


if __name__ == "__main__":
    sys.exit(main())
