"""With Redis configured but away, limited requests fail closed (503) and unlimited ones are served."""

from __future__ import annotations

import httpx2 as httpx

from tests.server import free_port, quasar_server
from tests.store_support import MASTER, admin_headers, chat_body, priced_config, tmp_sqlite_url


def test_limits_fail_closed_without_redis() -> None:
    env = {
        "QUASAR_DATABASE_URL": tmp_sqlite_url(),
        "QUASAR_MASTER_KEY": MASTER,
        "QUASAR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    with quasar_server(priced_config(), env=env) as running:
        made = httpx.post(f"{running.url}/admin/keys", json={"rpm": 100}, headers=admin_headers()).json()
        limited = httpx.post(
            f"{running.v1}/chat/completions",
            json=chat_body(1),
            headers={"Authorization": f"Bearer {made['key']}"},
            timeout=60,
        )
        assert limited.status_code == 503 and limited.json()["error"]["code"] == "store_unavailable"
        assert limited.headers["retry-after"] == "1"
        free = httpx.post(f"{running.v1}/chat/completions", json=chat_body(1), headers=admin_headers(), timeout=60)
        assert free.status_code == 200
        assert running.log().count("key events: Redis unavailable") == 1
