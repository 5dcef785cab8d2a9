"""KV admission: the shared pool, FIFO waits, timeouts and cancels (engines/kvbudget.py), and the output
limit and worst case the llama.cpp engine reserves (LlamaCppEngine.fit), without a model loaded."""

from __future__ import annotations

import asyncio

import pytest

from quasar.api.chat import ChatRequest
from quasar.config import BUILTIN_MODEL, Deployment
from quasar.engines.kvbudget import KvBudget
from quasar.engines.llamacpp import LlamaCppEngine
from quasar.errors import ContextLengthExceeded


def run(coro):
    return asyncio.run(coro)


def test_reserve_at_once_while_it_fits() -> None:
    async def main() -> None:
        kv = KvBudget(100)
        await kv.reserve(60, 1)
        await kv.reserve(40, 1)
        assert kv.free == 0 and kv.waiting == 0
        kv.release(60)
        assert kv.free == 60

    run(main())


def test_waiters_are_served_in_arrival_order_and_a_big_one_is_not_starved() -> None:
    async def main() -> None:
        kv = KvBudget(100)
        await kv.reserve(70, 1)
        order: list[str] = []

        async def take(name: str, need: int) -> None:
            await kv.reserve(need, 5)
            order.append(name)

        big = asyncio.create_task(take("big", 90))
        await asyncio.sleep(0)
        small = asyncio.create_task(take("small", 20))  # would fit now, but waits behind the big one
        await asyncio.sleep(0.01)
        assert order == [] and kv.waiting == 2 and not kv.fits_now(20)
        kv.release(70)
        await asyncio.sleep(0.01)
        assert order == ["big"] and kv.used == 90
        kv.release(90)
        await asyncio.gather(big, small)
        assert order == ["big", "small"] and kv.used == 20

    run(main())


def test_timeout_leaves_the_queue_and_lets_the_next_in() -> None:
    async def main() -> None:
        kv = KvBudget(100)
        await kv.reserve(50, 1)
        head = asyncio.create_task(kv.reserve(80, 0.05))
        await asyncio.sleep(0)
        behind = asyncio.create_task(kv.reserve(40, 5))
        with pytest.raises(TimeoutError):
            await head
        await asyncio.wait_for(behind, 1)  # 50 + 40 fit once the 80 has gone
        assert kv.used == 90 and kv.waiting == 0

    run(main())


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        kv = KvBudget(100)
        await kv.reserve(100, 1)
        waiter = asyncio.create_task(kv.reserve(10, 5))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert kv.waiting == 0
        kv.release(100)
        assert kv.used == 0

    run(main())


def test_granted_then_cancelled_gives_the_tokens_back() -> None:
    async def main() -> None:
        kv = KvBudget(100)
        await kv.reserve(100, 1)
        waiter = asyncio.create_task(kv.reserve(30, 5))
        await asyncio.sleep(0)
        kv.release(100)  # grants the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert kv.used == 0 and kv.waiting == 0

    run(main())


def test_more_than_the_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        run(KvBudget(10).reserve(11, 1))


# -- the engine's output limit and worst case ------------------------------------------------------------


def engine(**fields: object) -> LlamaCppEngine:
    return LlamaCppEngine(Deployment(engine="llamacpp", path=BUILTIN_MODEL, **fields))


def fit(eng: LlamaCppEngine, prompt_tokens: int = 30, **body: object) -> tuple[int, int, bool, dict]:
    async def count(messages: list) -> int:
        return prompt_tokens

    eng.count_prompt_tokens = count  # type: ignore[method-assign]
    request = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})
    payload = eng.payload(request)
    prompt, output, exact = run(eng.fit(request, payload))
    assert payload["max_tokens"] == output
    return prompt, output, exact, payload


def test_no_max_tokens_gets_max_output_tokens() -> None:
    prompt, output, exact, _ = fit(engine(max_output_tokens=16))
    assert output == 16 and not exact and prompt == engine().prompt_bound([{"role": "user", "content": "hi"}])


def test_default_output_is_bounded_by_the_context_left() -> None:
    prompt, output, exact, _ = fit(engine(context_length=128, max_output_tokens=1024), prompt_tokens=34)
    assert (prompt, output, exact) == (34, 94, True)
    _, output, _, _ = fit(engine(context_length=128, max_output_tokens=1024), prompt_tokens=34, n=2)
    assert output == 47


def test_explicit_max_tokens_is_honoured_above_max_output_tokens() -> None:
    _, output, _, _ = fit(engine(max_output_tokens=16), max_tokens=40)
    assert output == 40
    _, output, _, _ = fit(engine(max_output_tokens=16), max_completion_tokens=50, max_tokens=40)
    assert output == 50


def test_worst_case_over_the_context_is_400_with_the_numbers() -> None:
    with pytest.raises(ContextLengthExceeded) as exc:
        fit(engine(context_length=256), prompt_tokens=34, max_tokens=120, n=2)
    assert "256" in exc.value.message and "34" in exc.value.message and "274" in exc.value.message
    with pytest.raises(ContextLengthExceeded) as exc:
        fit(engine(context_length=256), max_tokens=300)
    assert exc.value.param == "max_tokens"
    with pytest.raises(ContextLengthExceeded) as exc:
        fit(engine(context_length=256), prompt_tokens=256)  # no max_tokens, and no room left for output
    assert exc.value.param == "messages"
