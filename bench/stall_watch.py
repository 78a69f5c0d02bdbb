"""SecantusDB stalls, caught while they last (``bench/load.py --stalls``).

SecantusDB serialises its storage work on one lock: one query that reads many
documents holds up every other operation of every service (docs/stack.md). A
stall shows as a run whose p99 is many seconds. This pings the server twice a
second from a thread of its own; when a ping has not come back within
``threshold_s``, it takes a ``py-spy dump --locals`` of the server *while* the
ping still waits, and names the command each working thread is running (the
one holding the lock is among them). py-spy is not in the lock file:
``.venv/bin/pip install py-spy``; without it only the stalls' times are kept.

    watch = StallWatch(mongo_uri, secantus_pid, Path("/tmp/stalls")).start()
    ...
    watch.stop(); watch.report()
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pymongo

WAITING = ("acquire", "wait", "recv", "select", "read_message", "accept", "sleep")


def busy_commands(dump: str) -> Counter:
    """``(command, collection)`` of each thread of a dump that is not waiting."""
    found: Counter = Counter()
    for block in dump.split("\nThread ")[1:]:
        frames = [line.strip() for line in block.splitlines() if re.match(r"^\s{4}\S", line)]
        if not frames or any(word in frames[0] for word in WAITING):
            continue
        command = re.search(r'doc: \{"(\w+)": "([\w.]+)"', block)
        found[(command.group(1), command.group(2)) if command
              else ("(no command)", frames[0].split(" (")[0])] += 1
    return found


class StallWatch:
    def __init__(self, uri: str, pid: int, out_dir: Path, threshold_s: float = 2.0,
                 interval_s: float = 0.5):
        self.client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=60_000)
        self.pid, self.out_dir, self.threshold_s, self.interval_s = pid, out_dir, threshold_s, interval_s
        self.py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        self.stalls: list[tuple[float, float, Counter]] = []  # (at, seconds, busy commands)
        self._stopped = threading.Event()

    def start(self) -> "StallWatch":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            answered = threading.Event()
            started = time.monotonic()

            threading.Thread(target=self._ping, args=(answered,), daemon=True).start()
            if not answered.wait(self.threshold_s):
                busy = self._dump(len(self.stalls))
                answered.wait(120)
                self.stalls.append((time.time(), time.monotonic() - started, busy))
            self._stopped.wait(self.interval_s)

    def _ping(self, answered: threading.Event) -> None:
        try:
            self.client.admin.command("ping")
        finally:
            answered.set()

    def _dump(self, number: int) -> Counter:
        if not self.py_spy:
            return Counter()
        dump = subprocess.run([self.py_spy, "dump", "--locals", "--pid", str(self.pid)],
                              capture_output=True, text=True, timeout=60).stdout
        (self.out_dir / f"stall-{number}.txt").write_text(dump)
        return busy_commands(dump)

    def report(self) -> None:
        if not self.stalls:
            print(f"SecantusDB stalls over {self.threshold_s:g} s: none")
            return
        print(f"SecantusDB stalls over {self.threshold_s:g} s: {len(self.stalls)}, "
              f"{sum(s for _, s, _ in self.stalls):.1f} s in all, longest "
              f"{max(s for _, s, _ in self.stalls):.1f} s (dumps in {self.out_dir})")
        for at, seconds, busy in self.stalls:
            working = ", ".join(f"{cmd} {coll} x{n}" for (cmd, coll), n in busy.most_common(4))
            print(f"  {time.strftime('%H:%M:%S', time.localtime(at))} {seconds:5.1f} s  "
                  f"{working or '(no dump: install py-spy)'}")
