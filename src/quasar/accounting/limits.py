"""Rate limits and budgets, per key and per customer_identifier.

RPM and TPM are token buckets that refill over a minute. A budget is a USD counter per period: a
request reserves its worst-case cost before dispatch and settles to its real cost after, so concurrent
requests cannot overspend. `LocalLimits` holds the state in this process; `RedisLimits` holds it in
Redis and checks and applies every limit of a request in one Lua script, atomically across replicas.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from redis.exceptions import RedisError

from quasar.config import Quota
from quasar.errors import RateLimited, StoreUnavailable

UNLIMITED = -1.0
PRUNE_AT = 10_000  # buckets held in process before full ones (the same as none) are dropped


@dataclass(frozen=True)
class Subject:
    """Who a limit applies to: `key:<id>` or `customer:<identifier>`."""

    name: str
    quota: Quota

    def period(self, now: datetime) -> str:
        if self.quota.budget_period == "day":
            return now.strftime("d%Y-%m-%d")
        if self.quota.budget_period == "month":
            return now.strftime("m%Y-%m")
        return "total"


def period_start(period: str, now: datetime) -> float:
    if period == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()
    if period == "month":
        return datetime(now.year, now.month, 1, tzinfo=UTC).timestamp()
    return 0.0


def period_seconds_left(period: str, now: datetime) -> int:
    if period == "day":
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    elif period == "month":
        end = (datetime(now.year, now.month, 1, tzinfo=UTC) + timedelta(days=32)).replace(day=1)
    else:
        return 86400
    return max(int((end - now).total_seconds()), 1)


def duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 6s, 1m30s."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


@dataclass
class Reservation:
    subjects: list[Subject]
    periods: list[str]
    tokens: int
    cost: float
    levels: list[tuple[float, float]]  # per subject: requests and tokens left in the bucket
    settled: bool = False

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers, for the first subject with each kind of limit."""
        out: dict[str, str] = {}
        for subject, (requests_left, tokens_left) in zip(self.subjects, self.levels, strict=True):
            quota = subject.quota
            if quota.rpm and "x-ratelimit-limit-requests" not in out:
                out.update(_bucket_headers("requests", quota.rpm, requests_left))
            if quota.tpm and "x-ratelimit-limit-tokens" not in out:
                out.update(_bucket_headers("tokens", quota.tpm, tokens_left))
        return out


def _bucket_headers(kind: str, limit: int, left: float) -> dict[str, str]:
    left = max(left, 0.0)
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(int(left)),
        f"x-ratelimit-reset-{kind}": duration((limit - left) * 60 / limit),
    }


def refused(subject: Subject, reason: str, wait: float, levels: dict[str, str], period: str) -> RateLimited:
    who = subject.name.replace(":", " ", 1)
    if reason == "budget":
        seconds = period_seconds_left(subject.quota.budget_period, datetime.now(UTC))
        return RateLimited(
            f"The budget of ${subject.quota.budget:g} for {who} ({period}) would be exceeded by this request.",
            code="insufficient_quota",
            headers={"Retry-After": str(seconds)},
        )
    limit = subject.quota.rpm if reason == "rpm" else subject.quota.tpm
    unit = "requests" if reason == "rpm" else "tokens"
    return RateLimited(
        f"Rate limit reached for {who}: {limit} {unit} per minute. Try again in {duration(wait)}.",
        headers={"Retry-After": str(max(int(math.ceil(wait)), 1)), **levels},
    )


class Limits(Protocol):
    async def reserve(self, subjects: list[Subject], tokens: int, cost: float) -> Reservation: ...

    async def settle(self, reservation: Reservation, tokens: int, cost: float) -> None: ...

    async def seed(self, subject: Subject, spent: float) -> None:
        """Start a budget counter at what the request log says was spent (kept if already counting)."""


@dataclass
class _Bucket:
    level: float
    at: float
    capacity: int

    def full(self, now: float) -> bool:
        return self.level + (now - self.at) * self.capacity / 60 >= self.capacity


@dataclass
class LocalLimits:
    """In-process limits: correct for one process; nothing awaits between check and apply."""

    buckets: dict[str, _Bucket] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def _level(self, name: str, capacity: int, now: float) -> float:
        bucket = self.buckets.get(name)
        if bucket is None:
            return float(capacity)
        return min(capacity, bucket.level + (now - bucket.at) * capacity / 60)

    async def reserve(self, subjects: list[Subject], tokens: int, cost: float) -> Reservation:
        now, wall = time.monotonic(), datetime.now(UTC)
        periods = [s.period(wall) for s in subjects]
        for subject, period in zip(subjects, periods, strict=True):
            q = subject.quota
            if q.rpm:
                level = self._level(f"{subject.name}:rpm", q.rpm, now)
                if level < 1:
                    wait = (1 - level) * 60 / q.rpm
                    raise refused(subject, "rpm", wait, _bucket_headers("requests", q.rpm, level), period)
            if q.tpm:
                need = min(tokens, q.tpm)
                level = self._level(f"{subject.name}:tpm", q.tpm, now)
                if level < need:
                    wait = (need - level) * 60 / q.tpm
                    raise refused(subject, "tpm", wait, _bucket_headers("tokens", q.tpm, level), period)
            if q.budget is not None and self.spent.get(f"{subject.name}:{period}", 0.0) + cost > q.budget:
                raise refused(subject, "budget", 0, {}, period)
        if len(self.buckets) > PRUNE_AT:
            self._prune(now)
        levels = []
        for subject, period in zip(subjects, periods, strict=True):
            q = subject.quota
            requests_left = tokens_left = UNLIMITED
            if q.rpm:
                requests_left = self._level(f"{subject.name}:rpm", q.rpm, now) - 1
                self.buckets[f"{subject.name}:rpm"] = _Bucket(requests_left, now, q.rpm)
            if q.tpm:
                tokens_left = self._level(f"{subject.name}:tpm", q.tpm, now) - min(tokens, q.tpm)
                self.buckets[f"{subject.name}:tpm"] = _Bucket(tokens_left, now, q.tpm)
            if q.budget is not None:
                name = f"{subject.name}:{period}"
                self.spent[name] = self.spent.get(name, 0.0) + cost
            levels.append((requests_left, tokens_left))
        return Reservation(subjects, periods, tokens, cost, levels)

    def _prune(self, now: float) -> None:
        """Drop refilled buckets: a full bucket is the same as none."""
        for name in [n for n, b in self.buckets.items() if b.full(now)]:
            del self.buckets[name]

    async def settle(self, reservation: Reservation, tokens: int, cost: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        now = time.monotonic()
        for subject, period in zip(reservation.subjects, reservation.periods, strict=True):
            q = subject.quota
            if q.tpm:
                name = f"{subject.name}:tpm"
                refund = min(reservation.tokens, q.tpm) - tokens
                self.buckets[name] = _Bucket(min(q.tpm, self._level(name, q.tpm, now) + refund), now, q.tpm)
            if q.budget is not None:
                name = f"{subject.name}:{period}"
                self.spent[name] = self.spent.get(name, 0.0) + cost - reservation.cost

    async def seed(self, subject: Subject, spent: float) -> None:
        self.spent.setdefault(f"{subject.name}:{subject.period(datetime.now(UTC))}", spent)


_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local function level(key, cap)
  local v = redis.call('HMGET', key, 'l', 't')
  if not v[1] then return cap end
  return math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / 60)
end
for i = 0, n - 1 do
  local rpm, tpm, budget = tonumber(ARGV[4 + i * 4]), tonumber(ARGV[5 + i * 4]), tonumber(ARGV[6 + i * 4])
  if rpm > 0 then
    local l = level(KEYS[1 + i * 3], rpm)
    if l < 1 then return {0, 'rpm', i, tostring((1 - l) * 60 / rpm), tostring(l)} end
  end
  if tpm > 0 then
    local need = math.min(tokens, tpm)
    local l = level(KEYS[2 + i * 3], tpm)
    if l < need then return {0, 'tpm', i, tostring((need - l) * 60 / tpm), tostring(l)} end
  end
  if budget >= 0 then
    local used = tonumber(redis.call('GET', KEYS[3 + i * 3]) or '0')
    if used + cost > budget then return {0, 'budget', i, '0', '0'} end
  end
end
local out = {1}
for i = 0, n - 1 do
  local rpm, tpm, budget = tonumber(ARGV[4 + i * 4]), tonumber(ARGV[5 + i * 4]), tonumber(ARGV[6 + i * 4])
  local ttl = tonumber(ARGV[7 + i * 4])
  local rl, tl = -1, -1
  if rpm > 0 then
    rl = level(KEYS[1 + i * 3], rpm) - 1
    redis.call('HSET', KEYS[1 + i * 3], 'l', tostring(rl), 't', tostring(now))
    redis.call('EXPIRE', KEYS[1 + i * 3], 120)
  end
  if tpm > 0 then
    tl = level(KEYS[2 + i * 3], tpm) - math.min(tokens, tpm)
    redis.call('HSET', KEYS[2 + i * 3], 'l', tostring(tl), 't', tostring(now))
    redis.call('EXPIRE', KEYS[2 + i * 3], 120)
  end
  if budget >= 0 then
    redis.call('INCRBYFLOAT', KEYS[3 + i * 3], tostring(cost))
    if ttl > 0 then redis.call('EXPIRE', KEYS[3 + i * 3], ttl) end
  end
  table.insert(out, tostring(rl))
  table.insert(out, tostring(tl))
end
return out
"""

_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local reserved_tokens, tokens, cost_delta = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = 0, n - 1 do
  local tpm, budget = tonumber(ARGV[5 + i * 2]), tonumber(ARGV[6 + i * 2])
  if tpm > 0 then
    local key = KEYS[1 + i * 2]
    local v = redis.call('HMGET', key, 'l', 't')
    local l = tpm
    if v[1] then l = math.min(tpm, tonumber(v[1]) + (now - tonumber(v[2])) * tpm / 60) end
    l = math.min(tpm, l + math.min(reserved_tokens, tpm) - tokens)
    redis.call('HSET', key, 'l', tostring(l), 't', tostring(now))
    redis.call('EXPIRE', key, 120)
  end
  if budget >= 0 then redis.call('INCRBYFLOAT', KEYS[2 + i * 2], cost_delta) end
end
return 1
"""


class RedisLimits:
    """Limits shared by every replica through Redis; each check-and-apply is one Lua script."""

    def __init__(self, redis: Any, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _key(self, subject: Subject, kind: str) -> str:
        return f"{self.namespace}:limit:{subject.name}:{kind}"

    async def reserve(self, subjects: list[Subject], tokens: int, cost: float) -> Reservation:
        wall = datetime.now(UTC)
        periods = [s.period(wall) for s in subjects]
        keys: list[str] = []
        args: list[Any] = [len(subjects), tokens, repr(cost)]
        for subject, period in zip(subjects, periods, strict=True):
            q = subject.quota
            keys += [self._key(subject, "rpm"), self._key(subject, "tpm"), self._key(subject, period)]
            ttl = period_seconds_left(q.budget_period, wall) + 3600 if q.budget_period != "total" else 0
            args += [q.rpm or 0, q.tpm or 0, repr(q.budget) if q.budget is not None else -1, ttl]
        try:
            result = await self._reserve(keys=keys, args=args)
        except RedisError:
            raise StoreUnavailable(
                "The limit store (Redis) is unavailable; try again shortly.", headers={"Retry-After": "1"}
            ) from None
        if int(result[0]) != 1:
            reason, index, wait, level = _text(result[1]), int(result[2]), float(result[3]), float(result[4])
            subject = subjects[index]
            q = subject.quota
            headers = {}
            if reason == "rpm" and q.rpm:
                headers = _bucket_headers("requests", q.rpm, level)
            elif reason == "tpm" and q.tpm:
                headers = _bucket_headers("tokens", q.tpm, level)
            raise refused(subject, reason, wait, headers, periods[index])
        levels = [(float(result[1 + 2 * i]), float(result[2 + 2 * i])) for i in range(len(subjects))]
        return Reservation(subjects, periods, tokens, cost, levels)

    async def settle(self, reservation: Reservation, tokens: int, cost: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        keys: list[str] = []
        args: list[Any] = [len(reservation.subjects), reservation.tokens, tokens, repr(cost - reservation.cost)]
        for subject, period in zip(reservation.subjects, reservation.periods, strict=True):
            keys += [self._key(subject, "tpm"), self._key(subject, period)]
            args += [subject.quota.tpm or 0, 1 if subject.quota.budget is not None else -1]
        await self._settle(keys=keys, args=args)

    async def seed(self, subject: Subject, spent: float) -> None:
        wall = datetime.now(UTC)
        await self.redis.set(self._key(subject, subject.period(wall)), repr(spent), nx=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
