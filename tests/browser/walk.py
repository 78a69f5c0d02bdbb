"""Steps the browser tests share: signing up and in through the pages, reading mail."""
from __future__ import annotations

import re
import uuid

from tests.e2e.mailbox import text_of
from tests.helpers import wait_until

PASSWORD = "correct horse battery staple 9"


def new_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(browser, email: str, name: str, password: str = PASSWORD, start: str = "/register") -> None:
    if start:
        browser.open(start)
    browser.fill(name=name, email=email, password=password)
    browser.shot("sign-up")
    browser.click("#register")
    wait_until(lambda: "/register" not in browser.path, timeout=20, what="the sign-up to finish")


def sign_in(browser, email: str, password: str = PASSWORD) -> None:
    browser.open("/login")
    browser.fill(email=email, password=password)
    browser.click("#sign-in")
    wait_until(lambda: "/login" not in browser.path, timeout=20, what="the sign-in to finish")


def mailed_link(mailbox, to: str, pattern: str, timeout: float = 30) -> str:
    """The newest link matching ``pattern`` in the mail to ``to``."""
    def found():
        links = [m for msg in mailbox.messages(to=to) for m in re.findall(pattern, text_of(msg))]
        return links[-1] if links else None

    return wait_until(found, timeout=timeout, interval=0.2, what=f"a mail to {to} with {pattern}")
