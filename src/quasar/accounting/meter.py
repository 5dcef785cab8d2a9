"""Admission and settlement: a request's worst case reserved against every limit of its key and
customer before any attempt, and settled to what it really cost once it ended, however it ended.

The worst case is taken over the router's whole plan: the largest prompt the request could be, the
output it may produce on any candidate (its max_tokens, else that candidate's context), at the
highest price of any candidate it may be sent to, fallbacks included, times `n`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from quasar.accounting.cost import cost_of
from quasar.accounting.limits import Limits, Reservation, Subject
from quasar.accounting.record import RequestRecord
from quasar.accounting.tokens import prompt_upper_bound
from quasar.api.chat import ChatRequest
from quasar.api.gateway import GatewayOptions
from quasar.auth.principal import Principal
from quasar.config import LimitsConfig
from quasar.gateway.router import Plan

log = logging.getLogger("quasar.meter")


@dataclass(frozen=True)
class Admission:
    """What admission reserved for one request (None when no limit applies) and the x-ratelimit-* headers."""

    reservation: Reservation | None = None
    headers: dict[str, str] = field(default_factory=dict)


UNLIMITED = Admission()


class Meter:
    def __init__(self, config: LimitsConfig, limits: Limits) -> None:
        self.config = config
        self.limits = limits
        self._settling: set[asyncio.Task[None]] = set()

    def subjects(self, principal: Principal, customer: str | None) -> list[Subject]:
        out = []
        if principal.quota is not None and principal.key_id is not None:
            out.append(Subject(f"key:{principal.key_id}", principal.quota))
        if customer is not None:
            quota = self.config.customers.get(customer) or self.config.customer
            if quota is not None:
                out.append(Subject(f"customer:{customer}", quota))
        return out

    async def admit(self, plan: Plan, request: ChatRequest, principal: Principal, options: GatewayOptions) -> Admission:
        """Reserve the plan's worst case against every limit; raises RateLimited when one would be passed."""
        subjects = self.subjects(principal, options.customer_identifier)
        if not subjects:
            return UNLIMITED
        prompt = prompt_upper_bound(request.messages)
        outputs = [(c.deployment, request.output_limit or c.deployment.context_length) for c in plan.candidates]
        tokens = prompt + max(output for _, output in outputs) * request.n
        worst = max(cost_of(d.price, prompt, 0, output) for d, output in outputs) * request.n
        reservation = await self.limits.reserve(subjects, tokens, worst)
        return Admission(reservation, reservation.headers())

    async def admit_input(self, plan: Plan, prompt: int, principal: Principal, options: GatewayOptions) -> Admission:
        """Reserve a request that reads at most `prompt` tokens and writes none (embeddings), at the
        highest input price of the plan's candidates."""
        subjects = self.subjects(principal, options.customer_identifier)
        if not subjects:
            return UNLIMITED
        worst = max(cost_of(c.deployment.price, prompt, 0, 0) for c in plan.candidates)
        reservation = await self.limits.reserve(subjects, prompt, worst)
        return Admission(reservation, reservation.headers())

    def settle(self, admission: Admission, record: RequestRecord) -> None:
        """Settle the reservation to the record's real tokens and cost, off the request path."""
        if admission.reservation is None:
            return
        task = asyncio.get_running_loop().create_task(self._settle(admission.reservation, record))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, reservation: Reservation, record: RequestRecord) -> None:
        try:
            tokens = 0 if record.cache_hit else record.prompt_tokens + record.completion_tokens
            await self.limits.settle(reservation, tokens, record.cost)
        except Exception as exc:
            log.warning("quasar: could not settle a reservation (%s)", type(exc).__name__)

    async def close(self) -> None:
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=5)
