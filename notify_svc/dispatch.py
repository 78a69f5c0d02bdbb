"""The notifications workflow: an event becomes in-app items and deliveries;
deliveries are sent, retried with back-off, held for quiet hours, or gathered
into digests. Rules come from :mod:`notify_svc.domain`; this module does the
I/O (store, Redis, channels, events) for the service's entrypoints."""
from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path

import nh3
import redis
import yaml
from jinja2 import Environment

from notify_svc import domain
from notify_svc.channels import Permanent, Transient
from notify_svc.store import now_utc
from shared.errors import Conflict, ValidationFailed
from shared.outbound import UnsafeUrl, allowed_networks, check_public_url
from shared.sealed import unseal

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
UNREAD_TTL = 300
ORG_DEFAULTS_TTL = 300
TEMPLATE_TTL = 300


def unread_key(user_id: str) -> str:
    return f"notifications:unread:{user_id}"


def user_channel(user_id: str) -> str:
    """Redis pub/sub channel a user's websockets listen on (gateway_svc.realtime)."""
    return f"notifications:user:{user_id}"


def user_stream(user_id: str) -> str:
    """Recent in-app items of a user, for websocket catch-up (gateway_svc.realtime)."""
    return f"notifications:stream:{user_id}"


STREAM_MAXLEN = 500
STREAM_TTL = 7 * 24 * 3600


def prefs_key(user_id: str) -> str:
    return f"notifications:prefs:{user_id}"


@lru_cache(maxsize=8)
def default_templates(locale: str) -> dict:
    path = TEMPLATES_DIR / f"{locale}.yaml"
    if not path.exists():
        path = TEMPLATES_DIR / "en.yaml"
    return yaml.safe_load(path.read_text())


@lru_cache(maxsize=1)
def _layout():
    return Environment(autoescape=True).from_string((TEMPLATES_DIR / "layout.html").read_text())


def html_email(subject: str, text: str, link: str | None, locale: str, footer: str,
               body_html: str | None = None) -> str:
    """The HTML part: our layout around the text's paragraphs, or around a
    template's own HTML (sanitized, so no markup or style of it can hide the
    footer or anything outside its own part), and always the fixed footer."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if link:
        paragraphs = [p.replace(link, "").strip() for p in paragraphs]
    return _layout().render(subject=subject, paragraphs=[p for p in paragraphs if p],
                            link=link, locale=locale, footer=footer,
                            body_html=nh3.clean(body_html) if body_html else None)


def public(doc: dict) -> dict:
    """A notification as the API shows it."""
    return {"id": doc["_id"], "kind": doc["kind"], "title": doc.get("title"),
            "body": doc.get("body"), "link": doc.get("link"), "read": doc.get("read", False),
            "org_id": doc.get("org_id"),
            "data": {**(doc.get("data") or {}), **({"tasks": doc["tasks"]} if "tasks" in doc else {})},
            "created_at": doc["created_at"].isoformat().replace("+00:00", "Z")}


class Notifier:
    def __init__(self, svc):
        self.store = svc.store
        self.redis = svc.redis
        self.mailer = svc.mailer
        self.pusher = svc.pusher
        self.events = svc.events
        self.config = svc.config
        self.organizations = svc.organizations

    def setting(self, name: str, default: float) -> float:
        return float(self.config.get(name, default))

    # caches ---------------------------------------------------------------
    def _cache_get(self, key: str):
        try:
            raw = self.redis.client.get(key)
        except redis.RedisError:
            return None
        return json.loads(raw) if raw else None

    def _cache_set(self, key: str, value, ttl: int) -> None:
        try:
            self.redis.client.set(key, json.dumps(value, default=str), ex=ttl)
        except redis.RedisError as exc:
            log.warning("cache set %s failed: %s", key, exc)

    def _cache_del(self, *keys: str) -> None:
        self.redis.cache.delete(*keys)  # again when Redis answers, if it does not now

    def preferences(self, user_id: str | None) -> dict:
        if user_id is None:
            return domain.default_preferences()
        cached = self._cache_get(prefs_key(user_id))
        if cached is None:
            cached = self.store.preferences(user_id) or domain.default_preferences()
            self._cache_set(prefs_key(user_id), cached, 3600)
        return {**domain.default_preferences(), **cached}

    def save_preferences(self, user_id: str, prefs: dict) -> dict:
        merged = {**domain.default_preferences(), **prefs}
        self.store.save_preferences(user_id, merged)
        self._cache_del(prefs_key(user_id))
        return merged

    def org_defaults(self, org_id: str | None) -> dict:
        """``organizations.get_org``'s notification defaults, cached; {} when unavailable."""
        if not org_id:
            return {}
        key = f"notifications:orgdefaults:{org_id}"
        cached = self._cache_get(key)
        if cached is not None:
            return cached
        try:
            org = self.organizations.get_org(org_id) or {}
            settings = org.get("settings") or {}
            defaults = settings.get("notification_defaults") or {}
            ttl = ORG_DEFAULTS_TTL
        except Exception as exc:  # built-in defaults; ask again soon
            log.info("org settings of %s unavailable: %s", org_id, exc)
            defaults, ttl = {}, 30
        self._cache_set(key, defaults if isinstance(defaults, dict) else {}, ttl)
        return defaults if isinstance(defaults, dict) else {}

    def forget_org_defaults(self, org_id: str) -> None:
        self._cache_del(f"notifications:orgdefaults:{org_id}")

    def template(self, org_id: str | None, kind: str, locale: str = "en") -> dict:
        if org_id:
            key = f"notifications:tpl:{org_id}:{kind}:{locale}"
            cached = self._cache_get(key)
            if cached is None:
                doc = self.store.template(org_id, kind, locale)
                cached = {p: doc[p] for p in domain.TEMPLATE_PARTS if doc and doc.get(p)}
                self._cache_set(key, cached, TEMPLATE_TTL)
            if cached:
                return cached
        return default_templates(locale)[kind]

    def save_template(self, org_id: str, kind: str, locale: str, template: dict) -> dict:
        domain.validate_template(kind, template)
        self.store.save_template(org_id, kind, locale, template)
        self._cache_del(f"notifications:tpl:{org_id}:{kind}:{locale}")
        return template

    def unread_count(self, user_id: str) -> int:
        try:
            cached = self.redis.client.get(unread_key(user_id))
        except redis.RedisError:
            cached = None
        if cached is not None:
            return int(cached)
        count = self.store.unread_count(user_id)
        self._cache_set(unread_key(user_id), count, UNREAD_TTL)
        return count

    # events -> notifications ---------------------------------------------
    def handle(self, event: dict) -> None:
        public_url = self.config.get("PUBLIC_URL") or ""
        for plan in domain.plans_for(event, public_url):
            self._notify(event, plan)

    def _notify(self, event: dict, plan: domain.Plan) -> None:
        rec = plan.recipient
        who = rec.user_id or (rec.email or "").lower()
        if not who:
            return
        directory = self.store.recipient(rec.user_id) if rec.user_id else None
        email = rec.email or (directory or {}).get("email")
        name = rec.name or (directory or {}).get("name")
        locale = (directory or {}).get("locale") or "en"
        prefs = self.preferences(rec.user_id)
        decision = domain.decide(plan.kind, prefs, self.org_defaults(event.get("org_id")),
                                 now_utc(), grouped=plan.group is not None)
        context = {**plan.context, "link": plan.link, "recipient_name": name, "count": 1,
                   "tasks": []}
        if plan.group:
            nid = domain.group_id(plan.group, who)
        else:
            nid = domain.notification_id(event["event_id"], who)
        rendered = self.render(event.get("org_id"), plan.kind, locale, context)
        if plan.kind in domain.SECRET_LINK_KINDS:  # the link goes by email only
            rendered["text"] = domain.render_part(
                "text", default_templates(locale)[plan.kind]["notice"], context)
        now = now_utc()
        doc = {"_id": nid, "user_id": rec.user_id, "kind": plan.kind,
               "title": rendered["subject"], "body": rendered.get("text"), "link": plan.link,
               "org_id": event.get("org_id"), "event_id": event["event_id"], "read": False,
               "created_at": now, "data": plan.context}
        if rec.user_id and decision.in_app:
            if plan.group:
                task = {"task_id": plan.context.get("task_id"), "title": plan.context.get("title")}
                base = {k: v for k, v in doc.items() if k not in ("_id", "data")}
                base["data"] = doc["data"]
                stored = self.store.add_to_group(nid, base, task)
                if len(stored.get("tasks", [])) == 1:
                    self._announce(stored)
            elif self.store.add_notification(doc):
                self._announce(doc)
        if email and decision.email:
            self._queue_email(nid, rec.user_id, email, name, plan, event, locale, decision)
        if rec.user_id and decision.push and self.pusher.enabled:
            self._push(nid, rec.user_id, plan.kind, rendered["subject"], plan.link)

    def _announce(self, doc: dict) -> None:
        self._cache_del(unread_key(doc["user_id"]))
        message = json.dumps({"type": "notification", "notification": public(doc)}, default=str)
        try:
            pipe = self.redis.client.pipeline(transaction=False)
            pipe.xadd(user_stream(doc["user_id"]), {"m": message}, maxlen=STREAM_MAXLEN,
                      approximate=True)
            pipe.expire(user_stream(doc["user_id"]), STREAM_TTL)
            pipe.publish(user_channel(doc["user_id"]), message)
            pipe.execute()
        except redis.RedisError as exc:  # the client catches up on reconnect
            log.warning("real-time publish failed: %s", exc)

    def _queue_email(self, nid, user_id, email, name, plan, event, locale, decision) -> None:
        now = now_utc()
        status, due = "queued", now
        if decision.email == "digest":
            status = "digest"
            window = self.setting(f"DIGEST_{self.preferences(user_id)['digest'].upper()}_SECONDS",
                                  3600 if self.preferences(user_id)["digest"] == "hourly" else 86400)
            due = self.store.digest_due_at(user_id) or now + timedelta(seconds=window)
        elif decision.email == "hold":
            status = "held"
            due = decision.not_before or now + timedelta(
                seconds=self.setting("NOTIFY_BULK_WINDOW_SECONDS", 2))
        delivery = {
            "_id": f"{nid}:email", "notification_id": nid, "user_id": user_id, "channel": "email",
            "kind": plan.kind, "to": email, "name": name, "org_id": event.get("org_id"),
            "locale": locale, "context": {**plan.context, "link": plan.link,
                                          "recipient_name": name,
                                          **({"sealed_link": plan.sealed_link}
                                             if plan.sealed_link else {})},
            "group": plan.group, "status": status, "due_at": due, "created_at": now,
            "attempts": [], "attempt_count": 0}
        if status == "queued":  # inserted already claimed: sent right now by this worker
            delivery.update(status="sending", lease_until=now + timedelta(seconds=60))
        if self.store.add_delivery(delivery) and status == "queued":
            self._send(delivery)

    def add_push_subscription(self, user_id: str, sub: dict) -> None:
        """A browser's subscription: a public https endpoint (shared.outbound),
        at most PUSH_MAX_SUBSCRIPTIONS per user, never another user's."""
        try:
            check_public_url(sub["endpoint"], allowed_networks(self.config))
        except UnsafeUrl as exc:
            raise ValidationFailed(f"The push endpoint is refused: {exc}.",
                                   {"endpoint": [str(exc)]}) from None
        cap = int(self.setting("PUSH_MAX_SUBSCRIPTIONS", 10))
        if not self.store.has_push_subscription(user_id, sub["endpoint"]) and \
                self.store.push_subscription_count(user_id) >= cap:
            raise ValidationFailed(f"At most {cap} push subscriptions; remove one first.",
                                   {"endpoint": [f"At most {cap} subscriptions."]})
        if not self.store.add_push_subscription(user_id, sub):
            raise Conflict("This push endpoint is registered to another account; "
                           "subscribe again for a new endpoint.")

    def _push(self, nid: str, user_id: str, kind: str, title: str, link: str | None) -> None:
        for sub in self.store.push_subscriptions(user_id):
            try:
                self.pusher.send(sub, {"id": nid, "kind": kind, "title": title, "link": link})
            except Permanent as exc:
                log.info("push subscription of %s gone: %s", user_id, exc)
                self.store.remove_push_subscription(None, sub["_id"])
            except Exception as exc:  # best effort: in-app and email still stand
                log.warning("push to %s failed: %s", user_id, exc)

    # sending --------------------------------------------------------------
    def render(self, org_id: str | None, kind: str, locale: str, context: dict) -> dict:
        """The org's template, or the default when the org's no longer renders
        (over its budget with this context, say): the message still goes out."""
        try:
            return domain.render(self.template(org_id, kind, locale), context)
        except domain.TemplateInvalid as exc:
            if not org_id:
                raise
            log.warning("template %s of org %s does not render, using the default: %s",
                        kind, org_id, exc)
            return domain.render(default_templates(locale)[kind], context)

    def footer(self, context: dict, locale: str) -> str:
        return domain.render_part("text", default_templates(locale)["footer"]["text"], {
            "sender": parseaddr(self.mailer.sender)[1], "org_name": context.get("org_name")}
        ).strip()

    def _email_content(self, delivery: dict) -> dict:
        context = dict(delivery["context"])
        context.update({"count": 1, "tasks": []})
        sealed = context.pop("sealed_link", None)
        if sealed:  # opened here only; raises Unsealable once the secret has expired
            context["link"] = unseal(self.config, sealed)
        if delivery.get("group"):
            doc = self.store.get_notification(delivery["notification_id"]) or {}
            tasks = doc.get("tasks") or []
            context.update({"count": max(1, len(tasks)), "tasks": tasks})
        locale = delivery.get("locale", "en")
        rendered = self.render(delivery.get("org_id"), delivery["kind"], locale, context)
        footer = self.footer(context, locale)
        rendered["html"] = html_email(rendered["subject"], rendered["text"], context.get("link"),
                                      locale, footer, rendered.get("html"))
        rendered["text"] = f"{rendered['text'].rstrip()}\n\n-- \n{footer}\n"
        return rendered

    def deliver(self, delivery_id: str) -> str | None:
        delivery = self.store.claim_delivery(delivery_id)
        if delivery is None:
            return None  # sent, failed, or another worker has it
        return self._send(delivery)

    def _send(self, delivery: dict) -> str:
        delivery_id = delivery["_id"]
        try:
            content = self._email_content(delivery)
            answer = self.mailer.send(delivery["to"], delivery.get("name"), content["subject"],
                                      content["text"], content.get("html"),
                                      message_id=f"<{delivery_id.replace(':', '.')}@workforce.local>")
        except Transient as exc:
            return self._transient(delivery, str(exc))
        except Exception as exc:  # Permanent, or a template that no longer renders
            return self._failed(delivery, f"{type(exc).__name__}: {exc}")
        self.store.record_attempt(delivery_id, "sent", answer)
        self._publish("notification.sent", delivery)
        return "sent"

    def _transient(self, delivery: dict, answer: str) -> str:
        attempts = delivery.get("attempt_count", 0) + 1
        if attempts >= int(self.setting("NOTIFY_MAX_ATTEMPTS", 8)):
            return self._failed(delivery, answer)
        delay = min(self.setting("NOTIFY_RETRY_MAX_SECONDS", 300),
                    self.setting("NOTIFY_RETRY_BASE_SECONDS", 2) * 2 ** (attempts - 1))
        self.store.record_attempt(delivery["_id"], "transient", answer,
                                  retry_at=now_utc() + timedelta(seconds=delay))
        log.warning("email %s failed (attempt %s), retry in %ss: %s", delivery["_id"],
                    attempts, delay, answer)
        return "retry"

    def _failed(self, delivery: dict, answer: str) -> str:
        self.store.record_attempt(delivery["_id"], "failed", answer)
        self._publish("notification.failed", delivery)
        return "failed"

    def _publish(self, event_type: str, delivery: dict) -> None:
        self.events.publish(event_type, {
            "notification_id": delivery["notification_id"], "user_id": delivery.get("user_id"),
            "channel": delivery["channel"], "kind": delivery["kind"]},
            org_id=delivery.get("org_id"),
            event_id=domain.notification_id(delivery["_id"], event_type))

    def deliver_due(self) -> int:
        sent = 0
        for delivery_id in self.store.due_deliveries():
            sent += self.deliver(delivery_id) == "sent"
        return sent

    def send_digests(self) -> int:
        lock = self.redis.lock("digest", timeout=120, blocking_timeout=0)
        if not lock.acquire(blocking=False):
            return 0
        try:
            count = 0
            for user_id in self.store.digest_users_due():
                self._send_digest(user_id)
                count += 1
            return count
        finally:
            try:
                lock.release()
            except Exception:
                pass

    def _send_digest(self, user_id: str) -> None:
        items = self.store.take_digest(user_id, uuid.uuid4().hex)
        if not items:
            return
        first = items[0]
        entries = []
        for item in items:
            content = self._email_content(item)
            entries.append({"subject": content["subject"], "link": item["context"].get("link")})
        locale = first.get("locale", "en")
        rendered = domain.render(default_templates(locale)["digest"], {"items": entries})
        footer = self.footer({}, locale)
        html = html_email(rendered["subject"], rendered["text"], None, locale, footer)
        rendered["text"] = f"{rendered['text'].rstrip()}\n\n-- \n{footer}\n"
        digest_delivery = {**first, "_id": f"digest:{first['_id']}", "kind": "digest"}
        try:
            answer = self.mailer.send(first["to"], first.get("name"), rendered["subject"],
                                      rendered["text"], html)
        except (Transient, Permanent) as exc:  # back into the digest, next tick
            log.warning("digest for %s failed: %s", user_id, exc)
            self.store.db.deliveries.update_many(
                {"_id": {"$in": [i["_id"] for i in items]}},
                {"$set": {"status": "digest", "due_at": now_utc() + timedelta(seconds=5)},
                 "$unset": {"digest_id": ""}, "$push": {"attempts": {
                     "at": now_utc(), "status": "transient", "answer": str(exc)[:500]}}})
            return
        for item in items:
            self.store.record_attempt(item["_id"], "sent", f"digest: {answer}")
        self._publish("notification.sent", digest_delivery)

    # read state -------------------------------------------------------------
    def mark_read(self, user_id: str, nid: str) -> dict | None:
        doc = self.store.mark_read(user_id, nid)
        if doc is not None and not doc.get("read"):
            self._cache_del(unread_key(user_id))
            self._publish_state("notification.read", doc)
        return doc

    def mark_all_read(self, user_id: str) -> int:
        count = self.store.mark_all_read(user_id)
        self._cache_del(unread_key(user_id))
        if count:
            self.events.publish("notification.read.all", {"user_id": user_id, "count": count},
                                actor_id=user_id)
        return count

    def delete(self, user_id: str, nid: str) -> dict | None:
        doc = self.store.delete_notification(user_id, nid)
        if doc is not None:
            self._cache_del(unread_key(user_id))
            self._publish_state("notification.deleted", doc)
        return doc

    def _publish_state(self, event_type: str, doc: dict) -> None:
        self.events.publish(event_type, {"notification_id": doc["_id"], "user_id": doc["user_id"],
                                         "channel": "in_app", "kind": doc["kind"]},
                            org_id=doc.get("org_id"), actor_id=doc["user_id"])
