"""Reloading the config under load (SIGHUP and POST /admin/reload): no request fails across it, a
config with errors is refused with its line, an unchanged local model is not loaded again; the router's
health settings (allowed_fails, cooldown_seconds) apply from the reload on."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import quasar_server
from tests.store_support import MASTER, admin_headers, wait_for

LOCAL = {"engine": "llamacpp", "path": "builtin:smollm2-135m-instruct", "parallel": 2, "context_length": 1024}


def config(fake: FakeProvider, *, price: float, extra_model: bool, key: str) -> str:
    models = [
        {"name": "spark", "deployments": [LOCAL]},
        {"name": "up", "deployments": [upstream(fake, price={"input": price, "output": price})]},
    ]
    if extra_model:
        models.append({"name": "up2", "deployments": [upstream(fake, name="up2-dep")]})
    return yaml.safe_dump({"models": models, "auth": {"api_keys": [key]}})


def test_reload_under_load_loses_no_request() -> None:
    with (
        FakeProvider("r") as fake,
        quasar_server(
            config(fake, price=1.0, extra_model=False, key="k-one"), env={"QUASAR_MASTER_KEY": MASTER}
        ) as srv,
    ):
        path = Path(srv.log_path).parent / "quasar.yaml"
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    body = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
                    r = client.post(f"{srv.v1}/chat/completions", json=body, headers={"Authorization": "Bearer k-one"})
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        before = httpx.post(
            f"{srv.v1}/chat/completions",
            json={"model": "up", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer k-one"},
        ).headers["x-quasar-cost"]
        # 1) SIGHUP: a new model, a new price, a second static key
        path.write_text(config(fake, price=2.0, extra_model=True, key="k-one").replace("- k-one", "- k-one\n  - k-two"))
        srv.process.send_signal(signal.SIGHUP)
        listed = wait_for(
            lambda: (
                (m := httpx.get(f"{srv.v1}/models", headers={"Authorization": "Bearer k-two"})).status_code == 200
                and [d["id"] for d in m.json()["data"]]
            ),
            timeout=20,
        )
        assert "up2" in listed
        after = httpx.post(
            f"{srv.v1}/chat/completions",
            json={"model": "up", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer k-two"},
        ).headers["x-quasar-cost"]
        assert float(after) == 2 * float(before)
        # 2) a config with errors is refused with its line; the running one keeps serving
        path.write_text(
            "models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n        parallel: zero\n"
        )
        refused = httpx.post(f"{srv.url}/admin/reload", headers=admin_headers(), timeout=30)
        assert refused.status_code == 400 and "quasar.yaml:5" in refused.json()["error"]["message"]
        # 3) the admin API reloads too; the other key is gone again
        path.write_text(config(fake, price=2.0, extra_model=False, key="k-one"))
        done = httpx.post(f"{srv.url}/admin/reload", headers=admin_headers(), timeout=30)
        assert done.status_code == 200 and done.json()["models"] == ["spark", "up"] and done.json()["loaded"] == 0
        assert httpx.get(f"{srv.v1}/models", headers={"Authorization": "Bearer k-two"}).status_code == 401
        stop.set()
        for t in threads:
            t.join(30)
        spark = httpx.post(
            f"{srv.v1}/chat/completions",
            json={"model": "spark", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            headers={"Authorization": "Bearer k-one"},
            timeout=60,
        )
        assert spark.status_code == 200
        assert statuses and set(statuses) == {200}, set(statuses)
        assert srv.log().count("quasar: loading") == 1  # the unchanged local model was not loaded again
        assert httpx.post(f"{srv.url}/admin/reload", headers={"Authorization": "Bearer k-one"}).status_code == 403


def test_reload_applies_allowed_fails_and_cooldown_seconds() -> None:
    def health(allowed_fails: int, cooldown_seconds: float) -> str:
        models = {"m": [upstream(a, name="a-dep"), upstream(b, name="b-dep")]}
        return gateway_config(models, retries=0, allowed_fails=allowed_fails, cooldown_seconds=cooldown_seconds)

    def answer(client: openai.OpenAI) -> tuple[str, dict]:
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}], extra_body={"request_breakdown": True}
        )
        return raw.headers["x-quasar-deployment"], raw.parse().model_extra["request_breakdown"]["routing"]

    with (
        FakeProvider("a") as a,
        FakeProvider("b") as b,
        quasar_server(health(2, 5), env={"QUASAR_MASTER_KEY": MASTER}) as srv,
    ):
        client = openai.OpenAI(base_url=srv.v1, api_key=MASTER, max_retries=0, timeout=20)
        # allowed_fails 2: one failure does not cool a-dep down, the next request goes to it again
        a.script("500")
        assert answer(client)[0] == "b-dep"
        served, routing = answer(client)
        assert served == "a-dep" and routing["dropped"] == [] and len(a.requests) == 2

        path = Path(srv.log_path).parent / "quasar.yaml"
        path.write_text(health(1, 30))
        done = httpx.post(f"{srv.url}/admin/reload", headers=admin_headers(), timeout=30)
        assert done.status_code == 200 and done.json()["restart_needed"] == []
        # allowed_fails 1, cooldown_seconds 30: one failure rests a-dep for 30 s (the old 5 s no longer)
        a.script("500")
        assert answer(client)[0] == "b-dep"
        served, routing = answer(client)
        assert served == "b-dep" and len(a.requests) == 3
        [dropped] = routing["dropped"]
        left = float(dropped["reason"].removeprefix("cooling down for ").split("s ")[0])
        assert dropped["deployment"] == "a-dep" and 25 < left <= 30, dropped
