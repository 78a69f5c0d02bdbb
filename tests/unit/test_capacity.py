"""bench/capacity.py's simulation agrees with queueing theory where theory has
an answer, so its predictions for the mesh can be trusted that far."""
import pytest

from bench.capacity import ceiling, cores_for, simulate


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.8])
def test_one_station_matches_m_m_1(rho):
    cost_ms = 2.0
    rate = rho * 1000 / cost_ms
    result = simulate({"s": cost_ms}, {"s": 1}, rate, requests=60_000, seed=7)
    station = result["stations"]["s"]
    assert station["utilisation"] == pytest.approx(rho, rel=0.05)
    # M/M/1: mean queue length rho^2 / (1 - rho); mean time in system cost / (1 - rho)
    assert station["queue_depth"] == pytest.approx(rho ** 2 / (1 - rho), rel=0.2)
    assert result["mean_ms"] == pytest.approx(cost_ms / (1 - rho), rel=0.2)


def test_a_station_near_saturation_queues_and_more_cores_drain_it():
    costs = {"gateway": 1.0, "db": 4.0}
    slow = simulate(costs, {"gateway": 1, "db": 1}, 230, requests=20_000)
    fast = simulate(costs, {"gateway": 1, "db": 2}, 230, requests=20_000)
    assert slow["stations"]["db"]["queue_depth"] > 5 * fast["stations"]["db"]["queue_depth"]
    assert fast["p99_ms"] < slow["p99_ms"]


def test_sizing_arithmetic():
    assert cores_for({"db": 9.5, "redis": 0.1}, 1000) == {"db": 16, "redis": 1}
    assert ceiling({"a": 5.0, "b": 5.0}, 2) == 200
