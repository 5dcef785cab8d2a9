"""Every operation in /openapi.json under schemathesis's generated requests, bounded and on loopback: no
5xx, no 422, every status documented, every error in its endpoint's envelope (the document's error
schemas: Anthropic's on /v1/messages, OpenAI's elsewhere); and the document describes the real bodies."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import quasar_server
from tests.store_support import MASTER, tmp_sqlite_url

EXAMPLES = 10  # per operation: CI time is bounded (about a minute on 2 cores)
MODELS = {"embedding": "e", "chat": "m"}
COVERED = {
    ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"), ("POST", "/api/generate/"),
    ("POST", "/v1/completions"), ("POST", "/v1/responses"), ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"), ("POST", "/v1/embeddings"), ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"), ("GET", "/v1/models"), ("GET", "/v1/models/{model_id}"),
    ("GET", "/admin/keys"), ("POST", "/admin/keys"), ("PATCH", "/admin/keys/{key_id}"),
    ("DELETE", "/admin/keys/{key_id}"), ("GET", "/v1/usage"), ("GET", "/v1/requests"), ("GET", "/metrics"),
}  # fmt: skip


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with FakeProvider("up") as fake:
        config = {
            "models": [
                {"name": "m", "deployments": [upstream(fake)]},
                {"name": "e", "mode": "embedding", "deployments": [upstream(fake)]},
            ],
            "router": {"retries": 0},
        }
        env = {"QUASAR_MASTER_KEY": MASTER, "QUASAR_DATABASE_URL": tmp_sqlite_url()}
        with quasar_server(yaml.safe_dump(config), env=env) as running:
            yield running.url


@pytest.fixture(scope="module")
def document(api: str) -> dict:
    return httpx.get(f"{api}/openapi.json", timeout=10).json()


def _own_model(case, served: bool) -> None:
    """Half the bodies name a served model, so that generated requests get past the 404 to the pipeline."""
    if served and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = MODELS["embedding" if case.path == "/v1/embeddings" else "chat"]


def test_every_operation(api: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= COVERED
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    for operation in operations:

        @given(case=operation.as_strategy(), served=st.booleans())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case, served: bool) -> None:
            _own_model(case, served)
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {MASTER}"}
            response = case.call(timeout=30)
            assert response.status_code != 422, (case.method, case.formatted_path, response.text[:300])
            case.validate_response(response, checks=checks)

        check()


def test_no_operation_documents_a_422_and_every_one_its_errors(document: dict) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            assert {"400", "401", "404"} <= set(responses), (method, path)
            envelope = "AnthropicError" if path.startswith("/v1/messages") else "Error"
            ref = responses["400"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{envelope}", (method, path)


def test_the_admin_api_documents_its_bodies(document: dict) -> None:
    for path, method in (("/admin/keys", "post"), ("/admin/keys/{key_id}", "patch")):
        body = document["paths"][path][method]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/KeyFields"}
    assert "201" in document["paths"]["/admin/keys"]["post"]["responses"]
    assert set(document["components"]["schemas"]["KeyFields"]["properties"]) >= {"name", "models", "rpm", "budget"}


def test_content_the_server_requires_is_required_in_the_document(document: dict) -> None:
    message = document["components"]["schemas"]["Message"]
    for branch in message["anyOf"]:  # every branch: content, or an assistant's calls instead of it
        assert branch["required"] in (["content"], ["content", "tool_call_id"], ["tool_calls"], ["function_call"])
        if branch["required"][0] != "content":
            assert branch["properties"]["role"] == {"const": "assistant"}
    assert "messages" in document["components"]["schemas"]["ChatRequest"]["required"]
    anthropic = document["components"]["schemas"]["AnthropicMessagesRequest"]
    assert {"model", "messages", "max_tokens"} <= set(anthropic["required"])
    items = document["components"]["schemas"]["ResponsesRequest"]["properties"]["input"]["anyOf"][1]["items"]["anyOf"]
    assert len(items) == 4  # Responses' input items, which the translation validates one by one
    assert {"role", "content"} <= set(document["components"]["schemas"]["ResponsesInputMessage"]["required"])
