"""Both limit stores, in-process and Redis: a request refused by one limit is charged to none of them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from quasar.accounting.limits import Limits, LocalLimits, RedisLimits, Subject
from quasar.config import Quota
from quasar.errors import RateLimited
from tests.store_support import REDIS, redis_namespace


@pytest.fixture(params=["local", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@contextlib.asynccontextmanager
async def open_limits(kind: str) -> AsyncIterator[Limits]:
    if kind == "local":
        yield LocalLimits()
        return
    with redis_namespace() as namespace:
        client = aioredis.from_url(REDIS)
        try:
            yield RedisLimits(client, namespace)
        finally:
            await client.aclose()


async def test_refused_requests_charge_nothing_and_settling_refunds(kind: str) -> None:
    async with open_limits(kind) as limits:
        await check(limits)


async def check(limits: Limits) -> None:
    key = Subject("key:k1", Quota(rpm=5, tpm=1000, budget=1.0))
    customer = Subject("customer:c1", Quota(rpm=1))
    await limits.reserve([key, customer], 100, 0.4)
    with pytest.raises(RateLimited) as refused:
        await limits.reserve([key, customer], 100, 0.4)
    assert refused.value.headers["x-ratelimit-limit-requests"] == "1"
    alone = await limits.reserve([key], 100, 0.4)
    headers = alone.headers()
    assert headers["x-ratelimit-remaining-requests"] == "3"  # the refused request took nothing from the key
    assert headers["x-ratelimit-remaining-tokens"] == "800"
    # 0.8 of 1.0 reserved: a third worst case of 0.4 does not fit until the first two settle lower
    with pytest.raises(RateLimited) as broke:
        await limits.reserve([key], 100, 0.4)
    assert broke.value.code == "insufficient_quota"
    await limits.settle(alone, 10, 0.1)
    again = await limits.reserve([key], 100, 0.4)
    assert int(again.headers()["x-ratelimit-remaining-tokens"]) in (789, 790)  # 1000 - 100 - 10 - 100, plus refill
