"""Bad input to the admin API, the usage API and the key CLI: always a 400 (or a clean CLI error) naming the field."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from tests.server import Running
from tests.store_support import admin_headers, cli, database_url

BIG = 10**30
# (raw JSON body, the field the 400 must name)
BAD_BODIES = [
    (b'{"rpm": 1e30}', "rpm"),
    (f'{{"rpm": {BIG}}}'.encode(), "rpm"),
    (f'{{"tpm": {BIG}}}'.encode(), "tpm"),
    (b'{"rpm": 2147483648}', "rpm"),
    (f'{{"rpm": -{BIG}}}'.encode(), "rpm"),
    (b'{"tpm": -1}', "tpm"),
    (b'{"rpm": NaN}', "rpm"),
    (b'{"budget": 1e400}', "budget"),
    (b'{"budget": -1e400}', "budget"),
    (b'{"budget": NaN}', "budget"),
    (b'{"budget": Infinity}', "budget"),
    (b'{"budget": -0.5}', "budget"),
    (b'{"budget": "5"}', "budget"),
    (b'{"expires": 1e400}', "expires"),
    (b'{"expires": 1e30}', "expires"),
    (f'{{"expires": {BIG}}}'.encode(), "expires"),
    (b'{"expires": "nan"}', "expires"),
    (b'{"expires": "99999999999999d"}', "expires"),
    (b'{"expires": true}', "expires"),
    (b'{"name": "a\\u0000b"}', "name"),
    (b'{"models": ["spark", "a\\u0000b"]}', "models[1]"),
    (b'{"budget_period": "week"}', "budget_period"),
]


def _check_400(reply: httpx.Response, param: str) -> None:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and param in error["message"], error


@pytest.mark.parametrize(("body", "param"), BAD_BODIES, ids=[b.decode() for b, _ in BAD_BODIES])
def test_bad_key_fields_are_a_400_naming_the_field(store_server: Running, body: bytes, param: str) -> None:
    headers = {**admin_headers(), "Content-Type": "application/json"}
    _check_400(httpx.post(f"{store_server.url}/admin/keys", content=body, headers=headers), param)
    made = httpx.post(f"{store_server.url}/admin/keys", json={"name": "target"}, headers=admin_headers())
    assert made.status_code == 201
    _check_400(httpx.patch(f"{store_server.url}/admin/keys/{made.json()['id']}", content=body, headers=headers), param)


def test_good_bodies_at_the_bounds_are_accepted(store_server: Running) -> None:
    body = {"rpm": 2**31 - 1, "tpm": 2**31 - 1, "budget": 1e300, "expires": "9999-01-01T00:00:00+00:00"}
    made = httpx.post(f"{store_server.url}/admin/keys", json=body, headers=admin_headers())
    assert made.status_code == 201, made.text
    one = httpx.get(f"{store_server.url}/admin/keys/{made.json()['id']}", headers=admin_headers()).json()
    assert one["rpm"] == 2**31 - 1 and one["tpm"] == 2**31 - 1 and one["budget"] == 1e300
    changed = httpx.patch(f"{store_server.url}/admin/keys/{one['id']}", json={"rpm": 7}, headers=admin_headers())
    assert changed.status_code == 200 and changed.json()["rpm"] == 7
    assert "9999" in cli("keys", "list", env={"QUASAR_DATABASE_URL": database_url(store_server)}).stdout


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "yesterday-ish", "30d"])
def test_bad_usage_times_are_a_400_naming_the_field(store_server: Running, name: str, value: str) -> None:
    reply = httpx.get(f"{store_server.v1}/usage", params={name: value}, headers=admin_headers())
    _check_400(reply, name)


def test_usage_and_logs_take_the_same_time_forms(store_server: Running) -> None:
    for value in ("1700000000", "1700000000.5", "2023-11-14T22:13:20Z"):
        reply = httpx.get(f"{store_server.v1}/usage", params={"from": value}, headers=admin_headers())
        assert reply.status_code == 200, reply.text
    env = {"QUASAR_DATABASE_URL": database_url(store_server)}
    for value in ("1700000000", "2023-11-14T22:13:20Z", "10m"):
        cli("logs", "--since", value, env=env)
    bad = cli("logs", "--since", "nan", env=env, check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--expires", "whenever"), "--expires"),
        (("--expires", "1e400"), "--expires"),
        (("--rpm", str(BIG)), "--rpm"),
        (("--tpm", "2147483648"), "--tpm"),
        (("--budget", "inf"), "--budget"),
        (("--budget", "nan"), "--budget"),
    ],
)
def test_bad_cli_key_fields_are_refused_cleanly(store_server: Running, args: tuple[str, str], option: str) -> None:
    done = cli("keys", "create", *args, env={"QUASAR_DATABASE_URL": database_url(store_server)}, check=False)
    assert done.returncode == 2 and option in done.stderr and "Traceback" not in done.stderr, done.stderr
