"""A real SMTP server for the end-to-end tests: aiosmtpd in its own process
(so its asyncio loop never meets eventlet), delivering into a Maildir that
the tests read."""
from __future__ import annotations

import email
import email.policy
import mailbox
import subprocess
import sys
import tempfile
from pathlib import Path

from ops import mesh


class Mailbox:
    def __init__(self):
        self.port = mesh.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="maildir-")) / "inbox"
        mailbox.Maildir(self.dir, create=True)
        self.proc: subprocess.Popen | None = None
        self._parsed: dict[str, email.message.EmailMessage] = {}

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        mesh.wait_for(lambda: mesh.port_open("127.0.0.1", self.port), 15, "the SMTP sink")

    def stop(self) -> None:
        if self.proc is not None:
            mesh.stop_process(self.proc)
            self.proc = None

    def messages(self, to: str | None = None) -> list[email.message.EmailMessage]:
        """Every message received so far (each file is parsed once), or those to ``to``."""
        box = mailbox.Maildir(self.dir, factory=None, create=False)
        for key in box.keys():
            if key not in self._parsed:
                with box.get_file(key) as handle:
                    self._parsed[key] = email.message_from_binary_file(
                        handle, policy=email.policy.default)
        return [m for m in self._parsed.values()
                if to is None or to.lower() in (m.get("To") or "").lower()]


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""
