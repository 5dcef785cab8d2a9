"""Tool calls reach the request log, streamed or not."""

from __future__ import annotations

import uuid

import openai

from tests.e2e.test_tools_local import ASK, TOOLS
from tests.server import Running
from tests.store_support import MASTER, database_url, log_rows, wait_for


def test_tool_calls_are_logged(store_server: Running) -> None:
    client = openai.OpenAI(base_url=store_server.v1, api_key=MASTER, max_retries=0, timeout=120)
    args = dict(model="spark", messages=ASK, tools=TOOLS, tool_choice="required", seed=2, max_tokens=60)
    ids = {"body": f"test-{uuid.uuid4().hex}", "stream": f"test-{uuid.uuid4().hex}"}
    body = client.chat.completions.create(**args, extra_headers={"x-request-id": ids["body"]})
    streamed: dict[str, str] = {}
    for chunk in client.chat.completions.create(**args, stream=True, extra_headers={"x-request-id": ids["stream"]}):
        for d in (chunk.choices[0].delta.tool_calls or ()) if chunk.choices else ():
            if d.index == 0:
                streamed["name"] = streamed.get("name", "") + (d.function.name or "")
                streamed["arguments"] = streamed.get("arguments", "") + (d.function.arguments or "")

    def found() -> dict[str, dict] | None:
        rows = {r["request_id"]: r for r in log_rows(database_url(store_server)) if r["request_id"] in ids.values()}
        return rows if len(rows) == 2 else None

    rows = wait_for(found)
    logged = rows[ids["body"]]["reply"][0]["tool_calls"][0]
    call = body.choices[0].message.tool_calls[0]
    assert (logged["id"], logged["function"]) == (call.id, call.function.model_dump())
    logged = rows[ids["stream"]]["reply"][0]["tool_calls"][0]
    assert logged["id"].startswith("call_") and logged["function"] == streamed
