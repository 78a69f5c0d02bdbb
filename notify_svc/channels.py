"""Delivery channels behind one small interface: ``send(...) -> answer`` that
raises :class:`Transient` (retry later) or :class:`Permanent` (give up).

Email goes over real SMTP with a small pool of reused connections (smtplib is
green under eventlet), or to ``.eml`` files under ``MAIL_DIR`` when no
``SMTP_URL`` is configured. Web push uses pywebpush with VAPID.
"""
from __future__ import annotations

import json
import logging
import smtplib
import ssl
import uuid
from email import quoprimime
from email.header import Header
from email.utils import formataddr, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import requests
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider

from shared.outbound import Unresolvable, UnsafeUrl, allowed_networks, check_public_url

log = logging.getLogger(__name__)


class Transient(Exception):
    """Try again later."""


class Permanent(Exception):
    """Will never succeed (bad address, subscription gone)."""


LINE_LIMIT = 78  # header folding and 7bit body lines (RFC 5322's recommended length)


def _header(name: str, value: str) -> bytes:
    """One header line: ASCII as it is, other text RFC 2047-encoded (and folded),
    like ``email.policy.default``; a line break in a value is refused, as there."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"Header values may not contain linefeed or carriage return characters: {name}")
    if name in ("From", "To") and not value.isascii():  # the display name encoded, not the address
        value = formataddr(parseaddr(value), charset="utf-8")
    if value.isascii() and len(name) + len(value) + 2 <= LINE_LIMIT:
        return f"{name}: {value}\r\n".encode()
    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset, maxlinelen=LINE_LIMIT, header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n".encode()


def _part(subtype: str, content: str) -> bytes:
    """A ``text/<subtype>`` part, 7bit when it can be, else quoted-printable."""
    lines = content.splitlines()
    if content.isascii() and all(len(line) <= LINE_LIMIT for line in lines):
        cte, body = "7bit", "\r\n".join(lines) + "\r\n"
    else:
        cte = "quoted-printable"
        body = quoprimime.body_encode("\n".join(lines).encode().decode("latin-1"),
                                      LINE_LIMIT - 2, eol="\r\n") + "\r\n"
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n{body}").encode("ascii")


def build_message(sender: str, to: str, subject: str, text: str, html: str | None,
                  message_id: str | None = None) -> bytes:
    """The email as sent (CRLF lines): ``From``, ``To``, ``Subject``, ``Message-ID``, a
    text part and, with ``html``, a multipart/alternative of both. Written out
    directly: ``email.message.EmailMessage`` parses every header it is given and
    again while flattening, ~4 ms a message, more than the SMTP exchange."""
    head = b"".join([_header("From", sender), _header("To", to), _header("Subject", subject),
                     _header("Message-ID", message_id or make_msgid(domain="workforce.local")),
                     b"MIME-Version: 1.0\r\n"])
    if not html:
        return head + _part("plain", text)
    boundary = f"=_{uuid.uuid4().hex}"  # "=_" never occurs in quoted-printable
    plain, rich = _part("plain", text), _part("html", html)
    return (head + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\n".encode() + plain + f"\r\n--{boundary}\r\n".encode() + rich
            + f"\r\n--{boundary}--\r\n".encode())  # a delimiter's CRLF is its own


class SmtpSettings:
    def __init__(self, url: str, timeout: float = 10):
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.ssl = parsed.scheme == "smtps"
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (465 if self.ssl else 25)
        self.user = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self.starttls = query.get("starttls", "false").lower() in ("1", "true", "yes")
        self.timeout = float(query.get("timeout", timeout))


class SmtpPool:
    """At most ``size`` open SMTP connections, reused across messages."""

    def __init__(self, settings: SmtpSettings, size: int = 4):
        self.settings = settings
        self.idle: LightQueue = LightQueue()
        self.size = size
        self.opened = 0  # connections opened over the pool's life (for the benchmark)
        self.slots = LightQueue()
        for _ in range(size):
            self.slots.put(None)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP
        if s.ssl:
            conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                    context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.starttls:
                conn.starttls(context=ssl.create_default_context())
        if s.user:
            conn.login(s.user, s.password or "")
        self.opened += 1
        return conn

    def send(self, sender: str, to: str, data: bytes, subject: str) -> str:
        """``data`` (``build_message``) from ``sender`` to ``to`` (bare addresses)."""
        self.slots.get()
        conn = None
        try:
            try:
                conn = self.idle.get_nowait()
            except Empty:
                conn = None
            for attempt in (1, 2):
                try:
                    if conn is None:
                        conn = self._connect()
                    refused = conn.sendmail(sender, [to], data)
                    if refused:
                        raise Permanent(f"refused: {refused}")
                    self.idle.put(conn)
                    conn = None
                    return "250 accepted"
                except smtplib.SMTPServerDisconnected:
                    conn = None  # a reused connection the server closed: one fresh try
                    if attempt == 2:
                        raise Transient("server disconnected") from None
                except smtplib.SMTPRecipientsRefused as exc:
                    self._release(conn)
                    conn = None
                    codes = [code for code, _ in exc.recipients.values()]
                    if all(400 <= c < 500 for c in codes):
                        raise Transient(str(exc.recipients)) from None
                    raise Permanent(str(exc.recipients)) from None
                except smtplib.SMTPResponseException as exc:
                    self._release(conn)
                    conn = None
                    text = f"{exc.smtp_code} {exc.smtp_error!r}"
                    if 400 <= exc.smtp_code < 500:
                        raise Transient(text) from None
                    raise Permanent(text) from None
                except (OSError, smtplib.SMTPException) as exc:
                    self._release(conn)
                    conn = None
                    raise Transient(f"{type(exc).__name__}: {exc}") from None
            raise Transient("unreachable")
        finally:
            self.slots.put(None)

    @staticmethod
    def _release(conn) -> None:
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        while True:
            try:
                conn = self.idle.get_nowait()
            except Empty:
                return
            try:
                conn.quit()
            except Exception:
                self._release(conn)


class FileMailer:
    """No SMTP configured: write ``.eml`` files (local runs)."""

    def __init__(self, directory: str):
        self.directory = Path(directory)
        self.opened = 0

    def send(self, sender: str, to: str, data: bytes, subject: str) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{uuid.uuid4().hex}.eml"
        path.write_bytes(data)
        log.info("mail to %s written to %s: %s", to, path, subject)
        return f"written {path}"

    def close(self) -> None:
        pass


class Mailer(DependencyProvider):
    def setup(self) -> None:
        config = self.container.config
        self.sender = config.get("MAIL_FROM") or "Workforce <no-reply@workforce.local>"
        self.sender_address = parseaddr(self.sender)[1]
        url = config.get("SMTP_URL")
        self.transport: SmtpPool | FileMailer
        if url:
            self.transport = SmtpPool(SmtpSettings(url, float(config.get("SMTP_TIMEOUT", 10))),
                                      int(config.get("SMTP_POOL_SIZE", 4)))
        else:
            self.transport = FileMailer(config.get("MAIL_DIR") or "./var/mail")

    @property
    def parallel(self) -> int:
        """Messages that can be sent at once: one per pooled connection."""
        return getattr(self.transport, "size", 1)

    def stop(self) -> None:
        self.transport.close()

    kill = stop

    def get_dependency(self, worker_ctx) -> "Mailer":
        return self

    def send(self, to: str, name: str | None, subject: str, text: str, html: str | None,
             message_id: str | None = None) -> str:
        data = build_message(self.sender, formataddr((name or "", to)), subject, text, html,
                             message_id)
        return self.transport.send(self.sender_address, to, data, subject)


class Pusher(DependencyProvider):
    """Web push (RFC 8030/8291) with VAPID, through pywebpush."""

    def setup(self) -> None:
        config = self.container.config
        key = (config.get("VAPID_PRIVATE_KEY") or "").strip()
        self.private_key = None
        if key:  # PEM, or the base64url raw/DER form `vapid --gen` prints
            from py_vapid import Vapid
            self.private_key = (Vapid.from_pem(key.encode()) if key.startswith("-----")
                                else Vapid.from_string(key))
        self.subject = config.get("VAPID_SUBJECT") or "mailto:ops@workforce.local"
        self.allowed_networks = allowed_networks(config)

    def get_dependency(self, worker_ctx) -> "Pusher":
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.private_key)

    def send(self, subscription: dict, payload: dict) -> str:
        from pywebpush import WebPushException, webpush
        info = {"endpoint": subscription["endpoint"], "keys": subscription["keys"]}
        try:  # again now: the name may point elsewhere than when it was accepted
            check_public_url(info["endpoint"], self.allowed_networks)
        except Unresolvable as exc:
            raise Transient(str(exc)) from None
        except UnsafeUrl as exc:
            raise Permanent(str(exc)) from None
        session = requests.Session()
        session.max_redirects = 0  # a redirect would skip the address check
        try:
            response = webpush(info, json.dumps(payload), vapid_private_key=self.private_key,
                               vapid_claims={"sub": self.subject}, timeout=10,
                               requests_session=session)
        except requests.TooManyRedirects:
            raise Permanent("the push endpoint redirects") from None
        except WebPushException as exc:
            status = getattr(exc.response, "status_code", None)
            if status in (404, 410):
                raise Permanent(f"{status} subscription gone") from None
            if status is not None and 400 <= status < 500 and status != 429:
                raise Permanent(f"{status} {exc}") from None
            raise Transient(str(exc)) from None
        except OSError as exc:
            raise Transient(str(exc)) from None
        finally:
            session.close()
        return f"{response.status_code}"
