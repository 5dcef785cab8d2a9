"""Health's latency average: this replica's samples weighed with the other replicas' shared reports."""

from __future__ import annotations

import pytest

from quasar.gateway.health import Health


def test_an_unmeasured_deployment_ranks_first_until_any_replica_measures_it() -> None:
    health = Health(5, 3)
    assert health.latency("a") == 0.0
    health.share([{"a": (0.4, 1)}])
    assert health.latency("a") == pytest.approx(0.4)


def test_reports_count_by_their_samples_up_to_ten() -> None:
    health = Health(5, 3)
    health.succeeded("a", 0.01)
    health.succeeded("a", 0.01)
    health.share([{"a": (1.0, 500)}, {"b": (0.2, 1)}])
    assert health.latency("a") == pytest.approx((2 * 0.01 + 10 * 1.0) / 12)
    assert health.latency("b") == pytest.approx(0.2)
    assert health.measured() == {"a": (pytest.approx(0.01), 2)}  # only this replica's own, to publish


def test_a_newer_share_replaces_the_last_one() -> None:
    health = Health(5, 3)
    health.share([{"a": (1.0, 3)}])
    health.share([])
    assert health.latency("a") == 0.0
