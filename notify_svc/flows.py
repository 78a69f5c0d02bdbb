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
from eventlet.greenpool import GreenPool
from jinja2 import Environment

from notify_svc import domain, schemas
from notify_svc.channels import Mailer, Permanent, Pusher, Transient
from notify_svc.contract import STREAM_MAXLEN, STREAM_TTL, user_channel, user_stream
from shared.errors import Conflict, ValidationFailed
from shared.mongo import utcnow
from shared.outbound import UnsafeUrl, allowed_networks, check_public_url
from shared.redis import clustered
from shared.rpc import ServiceProxy
from shared.sealed import unseal
from shared.service import Flows

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
UNREAD_TTL = 300
ORG_DEFAULTS_TTL = 300
TEMPLATE_TTL = 300


def unread_key(user_id: str) -> str:
    return f"notifications:unread:{user_id}"


def prefs_key(user_id: str) -> str:
    return f"notifications:prefs:{user_id}"


def prefs_tag(user_id: str) -> str:  # invalidated when the user saves preferences
    return f"prefs:{user_id}"


@lru_cache(maxsize=8)
def default_templates(locale: str) -> dict:
    path = TEMPLATES_DIR / f"{locale}.yaml"
    if not path.exists():
        path = TEMPLATES_DIR / "en.yaml"
    return yaml.safe_load(path.read_text())


@lru_cache(maxsize=1024)
def _footer(locale: str, sender: str, org_name: str | None) -> str:
    """The fixed footer (our own template, never an org's): rendered once per
    locale, sender and org name, not once per email (a tenth of a fan-out's CPU)."""
    return domain.render_part("text", default_templates(locale)["footer"]["text"], {
        "sender": sender, "org_name": org_name}).strip()


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


class Notifier(Flows):
    uses = ("mailer", "pusher", "organizations")
    mailer: Mailer
    pusher: Pusher
    organizations: ServiceProxy

    def setting(self, name: str, default: float) -> float:
        return float(self.config.get(name, default))

    # caches (self.redis.cache: hit/miss counted and logged, fails open) ---------
    def preferences(self, user_id: str | None) -> dict:
        if user_id is None:
            return domain.default_preferences()
        return self.preferences_of([user_id])[user_id]

    def preferences_of(self, user_ids: list[str]) -> dict[str, dict]:
        """Each user's preferences: one Redis read for all, then one MongoDB read
        for those not cached (cached for an hour, unless they were saved meanwhile)."""
        def load(keys: list[str]) -> dict[str, dict]:
            stored = self.store.preferences_of([user_of[key] for key in keys])
            return {key: stored.get(user_of[key]) or domain.default_preferences() for key in keys}

        user_of = {prefs_key(u): u for u in user_ids}
        found = self.redis.cache.get_many_or_set({key: prefs_tag(u) for key, u in user_of.items()},
                                                 load, ttl=3600)
        return {u: {**domain.default_preferences(), **(found[prefs_key(u)] or {})}
                for u in user_ids}

    def save_preferences(self, user_id: str, prefs: dict) -> dict:
        merged = {**domain.default_preferences(), **prefs}
        self.store.save_preferences(user_id, merged)
        self.redis.cache.invalidate_tags(prefs_tag(user_id))  # a read in flight stores nothing
        return merged

    def org_defaults(self, org_id: str | None) -> dict:
        """``organizations.get_org``'s notification defaults, cached; {} when unavailable."""
        if not org_id:
            return {}
        key = f"notifications:orgdefaults:{org_id}"
        cached = self.redis.cache.get(key)
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
        defaults = defaults if isinstance(defaults, dict) else {}
        self.redis.cache.set(key, defaults, ttl=ttl)
        return defaults

    def forget_org_defaults(self, org_id: str) -> None:
        self.redis.cache.delete(f"notifications:orgdefaults:{org_id}")

    def template(self, org_id: str | None, kind: str, locale: str = "en") -> dict:
        if org_id:
            key = f"notifications:tpl:{org_id}:{kind}:{locale}"
            def load() -> dict:
                doc = self.store.template(org_id, kind, locale)
                return {p: doc[p] for p in domain.TEMPLATE_PARTS if doc and doc.get(p)}

            cached = self.redis.cache.get_or_set(key, load, ttl=TEMPLATE_TTL)
            if cached:
                return cached
        return default_templates(locale)[kind]

    def save_template(self, org_id: str, kind: str, locale: str, template: dict) -> dict:
        domain.validate_template(kind, template)
        self.store.save_template(org_id, kind, locale, template)
        self.redis.cache.delete(f"notifications:tpl:{org_id}:{kind}:{locale}")
        return template

    def unread_count(self, user_id: str) -> int:
        return int(self.redis.cache.get_or_set(unread_key(user_id),
                                               lambda: self.store.unread_count(user_id),
                                               ttl=UNREAD_TTL))

    # events -> notifications ---------------------------------------------
    def handle(self, event: dict) -> None:
        self.handle_many([event])

    def handle_many(self, events: list[dict]) -> None:
        """Events handled together (a batch of one task event type): one read or
        write per collection for all of them, as for a bulk chunk (each event once:
        ``shared.events`` acks a redelivered copy that arrives in its first's batch)."""
        public_url = self.config.get("PUBLIC_URL") or ""
        self._notify([(event, plan) for event in events
                      for plan in domain.plans_for(event, public_url)])

    def handle_bulk(self, event: dict) -> None:
        """A bulk chunk: every assignee's notification, with one read or write per
        collection for the whole chunk instead of several per person."""
        self._notify([(event, plan) for plan in
                      domain.bulk_plans(event, self.config.get("PUBLIC_URL") or "")])

    def _templates_for(self, keys) -> dict:
        """``{(org_id, kind, locale): template}``: each looked up once per batch."""
        return {key: self.template(*key) for key in set(keys)}

    def _notify(self, pairs: list[tuple[dict, domain.Plan]]) -> None:
        pairs = [(e, p) for e, p in pairs if p.recipient.user_id or p.recipient.email]
        if not pairs:
            return
        users = sorted({p.recipient.user_id for _, p in pairs if p.recipient.user_id})
        directory, prefs = self.store.recipients(users), self.preferences_of(users)
        org_defaults = {org: self.org_defaults(org) for org in {e.get("org_id") for e, _ in pairs}}
        templates: dict = {}
        now = utcnow()
        items, deliveries, pushes = [], [], []
        rendered_for: dict[str, dict] = {}  # delivery id -> what its email renders too
        for event, plan in pairs:
            org_id = event.get("org_id")
            rec = plan.recipient
            entry = directory.get(rec.user_id) or {}
            email, name = rec.email or entry.get("email"), rec.name or entry.get("name")
            locale = entry.get("locale") or "en"
            user_prefs = prefs[rec.user_id] if rec.user_id else domain.default_preferences()
            user_prefs = {**user_prefs, "digest": domain.digest_of(user_prefs, org_defaults[org_id])}
            decision = domain.decide(plan.kind, user_prefs, org_defaults[org_id], now,
                                     grouped=plan.group is not None)
            who = rec.user_id or (rec.email or "").lower()
            nid = (domain.group_id(plan.group, who) if plan.group
                   else domain.notification_id(event["event_id"], who))
            if (org_id, plan.kind, locale) not in templates:
                templates[org_id, plan.kind, locale] = self.template(org_id, plan.kind, locale)
            context = {**plan.context, "link": plan.link, "recipient_name": name, "count": 1,
                       "tasks": []}
            rendered = self.render(org_id, plan.kind, locale, context,
                                   templates[org_id, plan.kind, locale])
            if plan.kind in domain.SECRET_LINK_KINDS:  # the link goes by email only
                rendered["text"] = domain.render_part(
                    "text", default_templates(locale)[plan.kind]["notice"], context)
            if rec.user_id and decision.in_app:
                items.append((plan, {
                    "_id": nid, "user_id": rec.user_id, "kind": plan.kind,
                    "title": rendered["subject"], "body": rendered.get("text"), "link": plan.link,
                    "org_id": org_id, "event_id": event["event_id"], "read": False,
                    "created_at": now, "data": plan.context}))
            if email and decision.email:
                deliveries.append(self._delivery(nid, rec.user_id, email, name, plan, org_id,
                                                 locale, decision, user_prefs, now))
                if not plan.group and not plan.sealed_link and \
                        plan.kind not in domain.SECRET_LINK_KINDS:  # the same context: once
                    rendered_for[deliveries[-1]["_id"]] = rendered
            if rec.user_id and decision.push and self.pusher.enabled:
                pushes.append((nid, rec.user_id, plan.kind, rendered["subject"], plan.link))
        announced = self._store_items(items)
        self._announce(announced)
        new = self.store.add_deliveries(deliveries)
        self._send_many([d for d in deliveries if d["_id"] in new and d["status"] == "sending"],
                        templates, rendered_for)
        # pushed when the one record it goes with is new: the in-app item, else the email
        # (else always). An event handled again (no ledger, see the task handlers), also
        # by two workers at once, pushes nothing twice: each of them may find one of the
        # two records new, but only one finds the record that decides.
        with_item, fresh_items = {doc["_id"] for _, doc in items}, {doc["_id"] for doc in announced}
        emailed = {d["notification_id"] for d in deliveries}
        fresh_emails = {d["notification_id"] for d in deliveries if d["_id"] in new}
        for push in pushes:
            nid = push[0]
            if (nid in fresh_items) if nid in with_item else (nid in fresh_emails
                                                              or nid not in emailed):
                self._push(*push)

    def _store_items(self, items: list[tuple[domain.Plan, dict]]) -> list[dict]:
        """Store the in-app items (one write); returns those to announce. A bulk
        job's items gather the job's tasks for one person (``tasks``)."""
        docs = [{**doc, "tasks": [self._group_task(plan)]} if plan.group else doc
                for plan, doc in items]
        new = self.store.add_notifications(docs)
        fresh = [doc for doc in docs if doc["_id"] in new]
        # the person's item of this job exists: this call's tasks go into it, and it is
        # announced if it holds none but these (a redelivery, or its first tasks here)
        grown = [(doc["_id"], {k: v for k, v in doc.items() if k != "_id"}, self._group_task(plan))
                 for plan, doc in items if plan.group and doc["_id"] not in new]
        ours: dict[str, list] = {}
        for _id, _, task in grown:
            ours.setdefault(_id, []).append(task)
        for _id, doc in self.store.add_to_groups(grown).items():
            if all(task in ours[_id] for task in doc.get("tasks") or []):
                fresh.append(doc)
        return fresh

    @staticmethod
    def _group_task(plan: domain.Plan) -> dict:
        return {"task_id": plan.context.get("task_id"), "title": plan.context.get("title")}

    def _announce(self, docs: list[dict]) -> None:
        if not docs:
            return
        self.redis.cache.delete(*{unread_key(doc["user_id"]) for doc in docs})
        client = self.redis.client
        messages = [(doc["user_id"], json.dumps(
            {"type": "notification", "notification": schemas.dump_notification(doc)}, default=str))
            for doc in docs]
        try:
            pipe = client.pipeline(transaction=False)
            for user_id, message in messages:
                pipe.xadd(user_stream(user_id), {"m": message}, maxlen=STREAM_MAXLEN,
                          approximate=True)
                pipe.expire(user_stream(user_id), STREAM_TTL)
                if not clustered(client):  # a cluster pipeline carries no PUBLISH (no key)
                    pipe.publish(user_channel(user_id), message)
            pipe.execute()
            if clustered(client):
                for user_id, message in messages:
                    client.publish(user_channel(user_id), message)
        except redis.RedisError as exc:  # the client catches up on reconnect
            log.warning("real-time publish failed: %s", exc)

    def _delivery(self, nid, user_id, email, name, plan, org_id, locale, decision, prefs,
                  now) -> dict:
        """The email delivery of one notification; a ``queued`` one is inserted
        already claimed (``sending``): this worker sends it right away."""
        status, due = "queued", now
        if decision.email == "digest":
            status = "digest"
            window = self.setting(f"DIGEST_{prefs['digest'].upper()}_SECONDS",
                                  domain.DIGEST_SECONDS[prefs["digest"]])
            due = self.store.digest_due_at(user_id) or now + timedelta(seconds=window)
        elif decision.email == "hold":
            status = "held"
            due = decision.not_before or now + timedelta(
                seconds=self.setting("NOTIFY_BULK_WINDOW_SECONDS", 2))
        delivery = {
            "_id": f"{nid}:email", "notification_id": nid, "user_id": user_id, "channel": "email",
            "kind": plan.kind, "to": email, "name": name, "org_id": org_id,
            "locale": locale, "context": {**plan.context, "link": plan.link,
                                          "recipient_name": name,
                                          **({"sealed_link": plan.sealed_link}
                                             if plan.sealed_link else {})},
            "group": plan.group, "status": status, "due_at": due, "created_at": now,
            "attempts": [], "attempt_count": 0}
        if status == "queued":
            delivery.update(status="sending", lease_until=now + timedelta(seconds=60))
        return delivery

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
    def render(self, org_id: str | None, kind: str, locale: str, context: dict,
               template: dict | None = None) -> dict:
        """The org's template (``template``, when the caller has it already), or the
        default when the org's no longer renders (over its budget with this
        context, say): the message still goes out."""
        try:
            return domain.render(template or self.template(org_id, kind, locale), context)
        except domain.TemplateInvalid as exc:
            if not org_id:
                raise
            log.warning("template %s of org %s does not render, using the default: %s",
                        kind, org_id, exc)
            return domain.render(default_templates(locale)[kind], context)

    def footer(self, context: dict, locale: str) -> str:
        return _footer(locale, parseaddr(self.mailer.sender)[1], context.get("org_name"))

    def _email_content(self, delivery: dict, group: dict | None = None,
                       template: dict | None = None, rendered: dict | None = None) -> dict:
        """The email's subject, text and HTML. ``rendered``: the template rendered
        already with this delivery's context (its in-app item, in the same batch)."""
        context = dict(delivery["context"])
        context.update({"count": 1, "tasks": []})
        sealed = context.pop("sealed_link", None)
        if sealed:  # opened here only; raises Unsealable once the secret has expired
            context["link"] = unseal(self.config, sealed)
        if delivery.get("group"):
            if group is None:
                group = self.store.get_notification(delivery["notification_id"])
            tasks = (group or {}).get("tasks") or []
            context.update({"count": max(1, len(tasks)), "tasks": tasks})
        locale = delivery.get("locale", "en")
        rendered = dict(rendered) if rendered is not None else self.render(
            delivery.get("org_id"), delivery["kind"], locale, context, template)
        footer = self.footer(context, locale)
        settings = domain.preferences_link(self.config.get("PUBLIC_URL") or "", delivery["kind"])
        if settings:  # every email but a security message: where to turn it off
            footer = f"Choose which emails you get: {settings}\n{footer}"  # the fixed notice ends it
        rendered["html"] = html_email(rendered["subject"], rendered["text"], context.get("link"),
                                      locale, footer, rendered.get("html"))
        rendered["text"] = f"{rendered['text'].rstrip()}\n\n-- \n{footer}\n"
        return rendered

    def _send_many(self, deliveries: list[dict], templates: dict | None = None,
                   rendered_for: dict | None = None) -> list[str]:
        """Send claimed deliveries over the mailer's pooled connections, publish the
        ``notification.sent`` of those that went out together, then record every
        outcome in one write: ``sent``, ``retry`` or ``failed`` each.
        ``templates`` (``{(org, kind, locale): template}``) are those looked up
        already; the others are looked up once each for the batch. ``rendered_for``
        (``{delivery id: rendered}``): templates rendered already for these
        deliveries' in-app items, with the same context."""
        if not deliveries:
            return []
        groups = self.store.get_notifications(
            [d["notification_id"] for d in deliveries if d.get("group")])

        def key(d: dict) -> tuple:
            return d.get("org_id"), d["kind"], d.get("locale", "en")

        templates = {**self._templates_for(key(d) for d in deliveries
                                           if key(d) not in (templates or {})),
                     **(templates or {})}
        pool = GreenPool(self.mailer.parallel)
        rendered_for = rendered_for or {}
        outcomes = list(pool.imap(lambda d: self._attempt(d, groups.get(d["notification_id"]),
                                                          templates[key(d)],
                                                          rendered_for.get(d["_id"])),
                                  deliveries))
        done = list(zip(deliveries, outcomes, strict=True))
        self.events.publish_now([self._sent(d) for d, (status, _, _) in done if status == "sent"])
        self.store.record_attempts([(d["_id"], status, answer, retry_at)
                                    for d, (status, answer, retry_at) in done])
        results = []
        for delivery, (status, answer, retry_at) in done:
            if status == "failed":  # for good: said where operators look, not only as an event
                log.warning("email %s failed for good: %s", delivery["_id"], answer)
                self._publish("notification.failed", delivery)
            elif status == "transient":
                log.warning("email %s failed (attempt %s), retry at %s: %s", delivery["_id"],
                            delivery.get("attempt_count", 0) + 1, retry_at, answer)
            results.append("retry" if status == "transient" else status)
        return results

    def _attempt(self, delivery: dict, group: dict | None, template: dict | None = None,
                 rendered: dict | None = None) -> tuple[str, str, object]:
        """One send: ``(status, answer, retry_at)`` for the delivery's record."""
        delivery_id = delivery["_id"]
        try:
            content = self._email_content(delivery, group, template, rendered)
            answer = self.mailer.send(delivery["to"], delivery.get("name"), content["subject"],
                                      content["text"], content.get("html"),
                                      message_id=f"<{delivery_id.replace(':', '.')}@workforce.local>")
        except Transient as exc:
            attempts = delivery.get("attempt_count", 0) + 1
            if attempts >= int(self.setting("NOTIFY_MAX_ATTEMPTS", 8)):
                return "failed", str(exc), None
            delay = min(self.setting("NOTIFY_RETRY_MAX_SECONDS", 300),
                        self.setting("NOTIFY_RETRY_BASE_SECONDS", 2) * 2 ** (attempts - 1))
            return "transient", str(exc), utcnow() + timedelta(seconds=delay)
        except Exception as exc:  # Permanent, or a template that no longer renders
            return "failed", f"{type(exc).__name__}: {exc}", None
        return "sent", answer, None

    @staticmethod
    def _event_of(delivery: dict) -> dict:
        return {"notification_id": delivery["notification_id"], "user_id": delivery.get("user_id"),
                "channel": delivery["channel"], "kind": delivery["kind"]}

    def _publish(self, event_type: str, delivery: dict) -> None:
        self.events.publish(event_type, self._event_of(delivery), org_id=delivery.get("org_id"),
                            event_id=domain.notification_id(delivery["_id"], event_type))

    def _sent(self, delivery: dict) -> dict:
        """The ``notification.sent`` of an email that went out, for
        ``EventBus.publish_now``: published before the delivery is recorded, with
        no outbox entry (it says why that is safe)."""
        return self.events.envelope("notification.sent", self._event_of(delivery),
                                    org_id=delivery.get("org_id"),
                                    event_id=domain.notification_id(delivery["_id"],
                                                                    "notification.sent"))

    def deliver_due(self, batch: int = 500, max_batches: int = 20) -> int:
        """Due deliveries in claimed batches (a bulk job's held emails arrive by the
        thousand), until none is left or ``max_batches`` were sent this tick."""
        sent = 0
        for _ in range(max_batches):
            claimed = self.store.claim_due(batch)
            sent += sum(r == "sent" for r in self._send_many(claimed))
            if len(claimed) < batch:
                break
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
                {"$set": {"status": "digest", "due_at": utcnow() + timedelta(seconds=5)},
                 "$unset": {"digest_id": ""}, "$push": {"attempts": {
                     "at": utcnow(), "status": "transient", "answer": str(exc)[:500]}}})
            return
        self.events.publish_now([self._sent(digest_delivery)])
        self.store.record_attempts([(item["_id"], "sent", f"digest: {answer}", None)
                                    for item in items])

    # read state -------------------------------------------------------------
    def mark_read(self, user_id: str, nid: str) -> dict | None:
        doc = self.store.mark_read(user_id, nid)
        if doc is not None and not doc.get("read"):
            self.redis.cache.delete(unread_key(user_id))
            self._publish_state("notification.read", doc)
        return doc

    def mark_all_read(self, user_id: str) -> int:
        count = self.store.mark_all_read(user_id)
        self.redis.cache.delete(unread_key(user_id))
        if count:
            self.events.publish("notification.read.all", {"user_id": user_id, "count": count},
                                actor_id=user_id)
        return count

    def delete(self, user_id: str, nid: str) -> dict | None:
        doc = self.store.delete_notification(user_id, nid)
        if doc is not None:
            self.redis.cache.delete(unread_key(user_id))
            self._publish_state("notification.deleted", doc)
        return doc

    def _publish_state(self, event_type: str, doc: dict) -> None:
        self.events.publish(event_type, {"notification_id": doc["_id"], "user_id": doc["user_id"],
                                         "channel": "in_app", "kind": doc["kind"]},
                            org_id=doc.get("org_id"), actor_id=doc["user_id"])
