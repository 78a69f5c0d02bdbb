"""A real SMTP server for tests: aiosmtpd in a child process (so eventlet's
monkey patching cannot touch its asyncio loop), writing every message it
accepts into a directory. It can be stopped and started again on the same
port (an SMTP outage).

    from tests.smtp_sink import smtp_sink   # the fixture, in a test module
    config = make_config(SMTP_URL=smtp_sink.url)
    msg = smtp_sink.wait_for(lambda m: m["To"].endswith("ann@example.com"))
"""
from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ops import mesh
from tests.helpers import wait_until

SERVER = r"""
import sys, time, uuid
from pathlib import Path
from aiosmtpd.controller import Controller

directory, port = Path(sys.argv[1]), int(sys.argv[2])

class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with open(directory / "connections.log", "a") as f:
            f.write("c\n")
        return responses

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        tmp = directory / (name + ".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(directory / (name + ".eml"))
        return "250 OK"

controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("READY", flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()
"""


class SmtpSink:
    def __init__(self, port: int | None = None):
        self.port = port or mesh.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "SmtpSink":
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.dir), str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if b"READY" not in line:
            raise RuntimeError("the SMTP sink did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted(self.dir.glob("*.eml"))]

    def connections(self) -> int:
        log = self.dir / "connections.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10):
        """The messages to ``address`` once there are at least ``count``."""
        return wait_until(lambda: (lambda got: got if len(got) >= count else None)(self.to(address)),
                          timeout=timeout, what=f"{count} email(s) to {address}")


def body_text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def body_html(msg) -> str:
    return msg.get_body(preferencelist=("html",)).get_content()


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()
