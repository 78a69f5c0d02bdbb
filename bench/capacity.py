"""Capacity: from measured CPU cost per request, predict queue depth, latency
and the replicas a given load needs.

Each process type (gateway, every service, RabbitMQ, Redis, MongoDB) is a
station with ``c`` cores; a request of the load mix visits every station in
turn and spends there, on average, the CPU milliseconds ``bench/load.py``
measured for it (its per-process CPU per request, read from /proc). The
simulation is event by event (exponential service times, Poisson arrivals), so
it shows queueing as a station nears saturation, which a sum of averages
hides.

    .venv/bin/python bench/capacity.py --rate 400                 # latency and queues at 400 req/s
    .venv/bin/python bench/capacity.py --plan                     # cores per station for 1k/10k/100k req/s
    .venv/bin/python bench/capacity.py --shared-cores 2 --check 90  # this machine vs a measured ceiling

``--costs FILE`` takes ``{"station": ms per request, ...}``; the default is
bench/costs.json, which bench/load.py writes (this machine's last run).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
from pathlib import Path

# CPU ms per request of the load mix, per process type, as bench/load.py measures
# them on this machine (it writes this file; docs/scaling.md gives the run)
COSTS_FILE = Path(__file__).with_name("costs.json")
TARGET_UTILISATION = 0.6  # headroom for bursts and a lost replica


def simulate(costs: dict[str, float], cores: dict[str, int], rate: float, requests: int = 20_000,
             seed: int = 1) -> dict:
    """Poisson arrivals at ``rate``/s through every station in order, event by
    event (each station: ``cores`` servers, one FIFO queue). Returns latency
    percentiles (ms) and per-station utilisation and mean queue depth."""
    rng = random.Random(seed)
    stations = list(costs)
    idle = {s: cores[s] for s in stations}
    waiting: dict[str, list] = {s: [] for s in stations}  # FIFO: (arrived, request)
    busy = dict.fromkeys(stations, 0.0)
    queue_area = dict.fromkeys(stations, 0.0)  # integral of queue length over time
    last_change = dict.fromkeys(stations, 0.0)
    born: dict[int, float] = {}
    latencies: list[float] = []
    events: list = []  # (time, seq, kind, request, station index)
    seq = 0

    def push(time, kind, request, index):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (time, seq, kind, request, index))

    def start(time, request, index):
        station = stations[index]
        service = rng.expovariate(1000 / costs[station]) if costs[station] > 0 else 0.0
        busy[station] += service
        push(time + service, "done", request, index)

    def note_queue(time, station):
        queue_area[station] += len(waiting[station]) * (time - last_change[station])
        last_change[station] = time

    t = 0.0
    for request in range(requests):
        t += rng.expovariate(rate)
        born[request] = t
        push(t, "arrive", request, 0)
    now = 0.0
    while events:
        now, _, kind, request, index = heapq.heappop(events)
        station = stations[index]
        if kind == "arrive":
            if idle[station]:
                idle[station] -= 1
                start(now, request, index)
            else:
                note_queue(now, station)
                waiting[station].append(request)
            continue
        if waiting[station]:  # this core takes the next in line
            note_queue(now, station)
            start(now, waiting[station].pop(0), index)
        else:
            idle[station] += 1
        if index + 1 < len(stations):
            push(now, "arrive", request, index + 1)
        else:
            latencies.append((now - born[request]) * 1000)
    span = now or 1.0
    latencies.sort()
    return {
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "mean_ms": statistics.fmean(latencies),
        "stations": {s: {"utilisation": busy[s] / (span * cores[s]),
                         "queue_depth": queue_area[s] / span}
                     for s in stations},
    }


def cores_for(costs: dict[str, float], rate: float, utilisation: float = TARGET_UTILISATION
              ) -> dict[str, int]:
    """Cores per station so that each runs at most ``utilisation`` busy at ``rate``."""
    return {s: max(1, math.ceil(rate * ms / 1000 / utilisation)) for s, ms in costs.items()}


def ceiling(costs: dict[str, float], shared_cores: int) -> float:
    """Requests/s at which ``shared_cores`` cores, running every process, are saturated."""
    return shared_cores * 1000 / sum(costs.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", help="JSON file: station -> CPU ms per request")
    parser.add_argument("--rate", type=float, help="arrival rate, requests/s")
    parser.add_argument("--cores", type=int, default=None,
                        help="cores per station (default: sized for the rate at 60%% busy)")
    parser.add_argument("--shared-cores", type=int, default=None,
                        help="every process shares this many cores (one machine)")
    parser.add_argument("--plan", action="store_true", help="cores per station for 1k/10k/100k req/s")
    parser.add_argument("--check", type=float, metavar="MEASURED_RPS",
                        help="compare the predicted ceiling with a measured throughput")
    args = parser.parse_args()
    path = Path(args.costs) if args.costs else COSTS_FILE
    if not path.exists():
        parser.error(f"no costs in {path}: run bench/load.py first (it writes them)")
    costs = json.loads(path.read_text())
    print(f"CPU per request: {sum(costs.values()):.1f} ms in all "
          + ", ".join(f"{s} {ms:g}" for s, ms in costs.items()))

    if args.plan:
        print(f"\ncores (= replicas of one core) per station at {TARGET_UTILISATION:.0%} busy:")
        print(f"{'station':<14}" + "".join(f"{r:>12,}" for r in (1_000, 10_000, 100_000)))
        plans = {r: cores_for(costs, r) for r in (1_000, 10_000, 100_000)}
        for station in costs:
            print(f"{station:<14}" + "".join(f"{plans[r][station]:>12,}" for r in plans))
        print(f"{'total':<14}" + "".join(f"{sum(plans[r].values()):>12,}" for r in plans))

    if args.shared_cores:
        top = ceiling(costs, args.shared_cores)
        print(f"\n{args.shared_cores} shared cores saturate at {top:.0f} req/s")
        if args.check:
            print(f"measured {args.check:.0f} req/s: predicted/measured {top / args.check:.2f}")
        if args.rate:  # the one machine as a single pool of cores
            merged = {"machine": sum(costs.values())}
            result = simulate(merged, {"machine": args.shared_cores}, args.rate)
            print(f"at {args.rate:g} req/s: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                  f"busy {result['stations']['machine']['utilisation']:.0%}, "
                  f"waiting {result['stations']['machine']['queue_depth']:.1f}")
    elif args.rate:
        cores = ({s: args.cores for s in costs} if args.cores else cores_for(costs, args.rate))
        result = simulate(costs, cores, args.rate)
        print(f"\nat {args.rate:g} req/s: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
        print(f"{'station':<14}{'cores':>6}{'busy':>7}{'waiting':>9}")
        for station, figures in result["stations"].items():
            print(f"{station:<14}{cores[station]:>6}{figures['utilisation']:>7.0%}"
                  f"{figures['queue_depth']:>9.2f}")


if __name__ == "__main__":
    main()
