"""A budget outlives the process: a restarted Quasar starts each budget at what the request log says was spent."""

from __future__ import annotations

import httpx2 as httpx

from quasar.accounting.record import cost_of
from quasar.config import Price
from tests.e2e.test_limits_local import WORST_COST
from tests.server import quasar_server
from tests.store_support import MASTER, PRICE, admin_headers, chat_body, priced_config, tmp_sqlite_url


def test_spent_budget_is_remembered_across_a_restart() -> None:
    env = {"QUASAR_DATABASE_URL": tmp_sqlite_url(), "QUASAR_MASTER_KEY": MASTER}
    # one request's worst case fits, and so would a second's if nothing had been spent
    budget = WORST_COST + cost_of(Price(**PRICE), 20, 0, 0)  # a request with "hi" costs more than 20 tokens
    with quasar_server(priced_config(), env=env) as first:
        made = httpx.post(f"{first.url}/admin/keys", json={"budget": budget}, headers=admin_headers()).json()
        headers = {"Authorization": f"Bearer {made['key']}"}
        assert httpx.post(f"{first.v1}/chat/completions", json=chat_body(1), headers=headers, timeout=60).is_success
    with quasar_server(priced_config(), env=env) as second:
        refused = httpx.post(f"{second.v1}/chat/completions", json=chat_body(1), headers=headers, timeout=60)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
