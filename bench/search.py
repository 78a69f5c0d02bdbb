"""Search on an org of 100,000 tasks (and a second org of 10,000 beside it,
so the tenancy filter has something to filter): cold p50/p99 of queries, each
beside a baseline measured in the same run.

* **cold**: every query on a freshly opened index (a new tantivy ``Index`` and
  searcher, as after a restart: no warmed reader) and with words no earlier
  query used (exact, typo, prefix and two-word queries);
* **warm**: the same queries again on one long-lived searcher;
* **baseline**: the same words matched by a linear scan over the same 100,000
  documents in Python (what search costs with no index at all), measured here.

The index is the search service's own (``search_svc.index.TantivyIndex``), on
disk in a temporary directory, queried in this process (no RPC or HTTP hop:
bench/rpc_roundtrip.py measures that hop).

    .venv/bin/python -m bench.search [--tasks 100000] [--queries 60]
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from search_svc import domain
from search_svc.index import SearchDoc, SearchQuery, TantivyIndex

ORG, OTHER = "org-bench", "org-other"
SYLLABLES = "ka lo mi ne ru sa te vo zu pa qi ba do fe gi ho ju".split()


def vocabulary(n: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def make_docs(org: str, count: int, words: list[str], rng: random.Random) -> list[SearchDoc]:
    docs = []
    for i in range(count):
        title = " ".join(rng.choices(words, k=rng.randint(3, 7)))
        body = " ".join(rng.choices(words, k=rng.randint(10, 40)))
        comments = " ".join(rng.choices(words, k=rng.randint(0, 20)))
        docs.append(SearchDoc(org, "task", f"t{i:06d}", title, body, comments,
                              {"status": "todo", "priority": "medium"}))
    return docs


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def queries(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Exact words, a typo (a letter dropped), a prefix being typed, two words."""
    picked = rng.sample(words, n * 2)
    made = []
    for i in range(n):
        w = picked[i]
        kind = i % 4
        made.append(w if kind == 0 else
                    (w[:2] + w[3:] if len(w) > 5 else w) if kind == 1 else
                    w[:max(3, len(w) // 2)] if kind == 2 else
                    f"{w} {picked[n + i]}")
    return made


def scan(docs: list[SearchDoc], q: str) -> int:
    """The no-index baseline: every doc's text, every word of the query, substring match."""
    terms = domain.words(q)
    found = 0
    for d in docs:
        text = f"{d.title} {d.body} {d.comments}".lower()
        if all(t in text for t in terms):
            found += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    rng = random.Random(7)
    words = vocabulary(5000, rng)
    docs = make_docs(ORG, args.tasks, words, rng)
    others = make_docs(OTHER, args.tasks // 10, words, rng)

    with tempfile.TemporaryDirectory() as path:
        writer = TantivyIndex(path, heap_bytes=200_000_000, threads=2)
        started = time.perf_counter()
        for i in range(0, len(docs), 10_000):
            writer.upsert(docs[i:i + 10_000])
        writer.upsert(others)
        index_s = time.perf_counter() - started
        writer.writer.wait_merging_threads()
        del writer

        qs = queries(words, args.queries, rng)
        cold, opens, hits = [], [], []
        for q in qs:
            started = time.perf_counter()
            fresh = TantivyIndex(path, read_only=True)  # a new reader: nothing warmed
            opens.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            found, total = fresh.search(SearchQuery(ORG, domain.plan_query(q), domain.TYPES, 20))
            cold.append((time.perf_counter() - started) * 1000)
            hits.append(total)
        reader = TantivyIndex(path, read_only=True)
        warm = []
        for q in qs:
            started = time.perf_counter()
            reader.search(SearchQuery(ORG, domain.plan_query(q), domain.TYPES, 20))
            warm.append((time.perf_counter() - started) * 1000)
        suggest = []
        for q in qs:
            started = time.perf_counter()
            reader.suggest(ORG, q[:4], domain.TYPES, 8)
            suggest.append((time.perf_counter() - started) * 1000)
        baseline = []
        for q in qs[: max(5, args.queries // 6)]:  # slow: a few are enough for its median
            started = time.perf_counter()
            scan(docs, q)
            baseline.append((time.perf_counter() - started) * 1000)

    p50_base = statistics.median(baseline)
    print(f"search bench: {args.tasks:,} tasks in the org (+{len(others):,} in another), "
          f"{args.queries} queries (exact, typo, prefix, two words); indexed in {index_s:.1f} s")
    print(f"  median hits per query: {statistics.median(hits):.0f}")
    for label, values in (("cold (fresh index + searcher, new words)", cold),
                          ("opening the index (not in cold)", opens),
                          ("warm (one searcher)", warm), ("suggest (warm)", suggest),
                          ("baseline: linear scan, no index", baseline)):
        p50 = statistics.median(values)
        print(f"  {label:42s} p50 {p50:8.2f} ms  p99 {pct(values, 99):8.2f} ms  "
              f"= {p50 / p50_base:.4f} x baseline")
    print(f"  cold p50 under 50 ms: {'yes' if statistics.median(cold) < 50 else 'NO'}")


if __name__ == "__main__":
    main()
