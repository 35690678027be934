"""Drive `warden serve`'s A2A endpoint with the official `a2a-sdk` client (A2A 1.0, JSON-RPC).

Usage: a2a_client.py BASE_URL TOKEN OTHER_TOKEN

Reports what the server answered as one JSON object on stdout; `tests/e2e/a2a.rs` checks it
against the ledger. Nothing here decides whether the server is right: it only records.
"""

import asyncio
import copy
import json
import sys

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.client.errors import A2AClientError
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
)
from a2a.utils.errors import A2AError


def message(text=None, data=None, skill=None, message_id="m"):
    part = Part(text=text) if text is not None else Part()
    if data is not None:
        part.data.struct_value.update(data)
    msg = Message(message_id=message_id, role=Role.ROLE_USER, parts=[part])
    if skill is not None:
        msg.metadata.update({"skill": skill})
    return msg


def error(e):
    """An SDK error as {type, message}."""
    return {"type": type(e).__name__, "message": str(e)}


async def events(client, request):
    """Every event of a send, as dicts."""
    return [MessageToDict(ev) async for ev in client.send_message(request)]


def final_task(evs):
    """The task as the events leave it: the first snapshot, updated by each status update."""
    task = None
    for ev in evs:
        if "task" in ev:
            task = copy.deepcopy(ev["task"])
        elif "statusUpdate" in ev:
            task["status"] = ev["statusUpdate"]["status"]
        elif "artifactUpdate" in ev:
            task.setdefault("artifacts", []).append(ev["artifactUpdate"]["artifact"])
    return task


async def rpc(http, url, body, headers=None):
    """A raw JSON-RPC POST: the HTTP status and the JSON answer."""
    r = await http.post(url, content=body, headers=headers or {})
    try:
        answer = r.json()
    except ValueError:
        answer = r.text
    return {"status": r.status_code, "answer": answer}


async def main(base, token, other_token):
    out = {}
    auth = {"Authorization": f"Bearer {token}"}
    anon = httpx.AsyncClient(timeout=60)
    http = httpx.AsyncClient(headers=auth, timeout=60)
    other = httpx.AsyncClient(headers={"Authorization": f"Bearer {other_token}"}, timeout=60)

    # The cards: public (no skills), the caller's (a skill per agent), one agent's own.
    public = await A2ACardResolver(anon, base).get_agent_card()
    out["public_card"] = MessageToDict(public)
    card = await A2ACardResolver(http, base).get_agent_card()
    out["card"] = MessageToDict(card)
    hello_card = await A2ACardResolver(http, base).get_agent_card("/a2a/hello/.well-known/agent-card.json")
    out["hello_card"] = MessageToDict(hello_card)

    # Streaming (the card says it can), on the shared endpoint with the skill in metadata.
    streaming = await create_client(base, client_config=ClientConfig(httpx_client=http))
    evs = await events(streaming, SendMessageRequest(message=message(text="bob", skill="hello")))
    out["hello_streamed"] = {"events": evs, "task": final_task(evs)}

    # Not streaming, at hello's own endpoint, the input as a data part.
    blocking = await create_client(hello_card, client_config=ClientConfig(httpx_client=http, streaming=False))
    evs = await events(blocking, SendMessageRequest(message=message(data={"name": "ann"})))
    out["hello_sent"] = final_task(evs)

    shared = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=False))
    task_id = out["hello_sent"]["id"]
    out["get_task"] = MessageToDict(await shared.get_task(GetTaskRequest(id=task_id)))
    out["list_tasks"] = MessageToDict(await shared.list_tasks(ListTasksRequest()))
    out["list_page"] = MessageToDict(await shared.list_tasks(ListTasksRequest(page_size=1)))
    out["list_hello_only"] = MessageToDict(await blocking.list_tasks(ListTasksRequest()))

    # Another user sees none of it.
    stranger = await create_client(card, client_config=ClientConfig(httpx_client=other, streaming=False))
    try:
        out["other_get"] = MessageToDict(await stranger.get_task(GetTaskRequest(id=task_id)))
    except A2AError as e:
        out["other_get"] = error(e)
    out["other_list"] = MessageToDict(await stranger.list_tasks(ListTasksRequest()))
    out["other_card"] = MessageToDict(await A2ACardResolver(other, base).get_agent_card())
    probe = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "SendMessage", "params": {
        "message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"data": {"op": "echo", "text": "hi"}}],
                    "metadata": {"skill": "probe"}}}})
    out["other_probe"] = await rpc(other, f"{base}/a2a", probe)
    out["other_probe_own"] = await rpc(other, f"{base}/a2a/probe", probe)

    # A slow agent: answered at once (polling), then cancelled while it spins.
    polling = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=False, polling=True))
    evs = await events(polling, SendMessageRequest(message=message(data={"op": "spin"}, skill="probe")))
    spinning = final_task(evs)
    out["spin_sent"] = spinning
    try:
        out["spin_cancel"] = MessageToDict(await shared.cancel_task(CancelTaskRequest(id=spinning["id"])))
    except A2AError as e:
        out["spin_cancel"] = error(e)
    out["spin_after_cancel"] = MessageToDict(await shared.get_task(GetTaskRequest(id=spinning["id"])))
    # Followed to its end (a task the server could not stop ends at its CPU limit).
    subscriber = await create_client(card, client_config=ClientConfig(httpx_client=http))
    try:
        evs = [MessageToDict(ev) async for ev in subscriber.subscribe(SubscribeToTaskRequest(id=spinning["id"]))]
        out["spin_followed"] = {"events": evs, "task": final_task(evs)}
    except A2AError as e:
        out["spin_followed"] = error(e)
    # An ended task cannot be cancelled.
    try:
        out["ended_cancel"] = MessageToDict(await shared.cancel_task(CancelTaskRequest(id=task_id)))
    except A2AError as e:
        out["ended_cancel"] = error(e)

    # A model call over the task's budget: escalated, for a person to decide.
    evs = await events(
        shared,
        SendMessageRequest(message=message(data={"op": "model", "model": "small", "text": "hi", "max_tokens": 1000}, skill="probe")),
    )
    out["escalated"] = final_task(evs)

    # An irreversible tool: the task waits for a person's approval (streamed to its end).
    evs = await events(
        streaming,
        SendMessageRequest(message=message(data={"op": "tool", "name": "deploy", "input": "v1"}, skill="probe")),
    )
    out["deploy_streamed"] = {"events": evs, "task": final_task(evs)}
    deploy_id = out["deploy_streamed"]["task"]["id"]
    out["deploy_get"] = MessageToDict(await shared.get_task(GetTaskRequest(id=deploy_id)))
    # The same through a blocking SendMessage: its answer names the action too.
    evs = await events(
        shared,
        SendMessageRequest(message=message(data={"op": "tool", "name": "deploy", "input": "v2"}, skill="probe")),
    )
    out["deploy_blocking"] = final_task(evs)

    # Without a token: refused, by the SDK's client and on the wire.
    try:
        nobody = await create_client(card, client_config=ClientConfig(httpx_client=anon, streaming=False))
        await events(nobody, SendMessageRequest(message=message(text="eve", skill="hello")))
        out["no_token"] = "accepted"
    except A2AClientError as e:
        out["no_token"] = error(e)
    url = f"{base}/a2a"
    send = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"text": "eve"}], "metadata": {"skill": "hello"}}}})
    out["no_token_raw"] = await rpc(anon, url, send, {"A2A-Version": "1.0"})

    # Malformed requests: JSON-RPC errors, and no task is made.
    before = MessageToDict(await shared.list_tasks(ListTasksRequest()))
    out["malformed"] = {
        "not_json": await rpc(http, url, "{not json"),
        "no_method": await rpc(http, url, json.dumps({"jsonrpc": "2.0", "id": 2, "params": {}})),
        "unknown_method": await rpc(http, url, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "Teleport"})),
        "bad_params": await rpc(http, url, json.dumps({"jsonrpc": "2.0", "id": 4, "method": "SendMessage", "params": {"message": "hi"}})),
        "no_skill": await rpc(http, url, json.dumps({"jsonrpc": "2.0", "id": 5, "method": "SendMessage", "params": {
            "message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"text": "eve"}]}}})),
        "path_skill": await rpc(http, url, send.replace('"skill": "hello"', '"skill": "../hello"')),
        "file_part": await rpc(http, url, json.dumps({"jsonrpc": "2.0", "id": 6, "method": "SendMessage", "params": {
            "message": {"messageId": "x", "role": "ROLE_USER", "parts": [{"url": "file:///etc/passwd"}], "metadata": {"skill": "hello"}}}})),
        "old_version": await rpc(http, url, send, {"A2A-Version": "0.3"}),
        "no_task": await rpc(http, url, json.dumps({"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "999999"}})),
    }
    # The SDK sends its version header on every request; `rpc` above sent none unless told.
    out["tasks_before_malformed"] = before.get("totalSize", 0)
    out["tasks_after_malformed"] = MessageToDict(await shared.list_tasks(ListTasksRequest())).get("totalSize", 0)

    for c in (anon, http, other):
        await c.aclose()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
