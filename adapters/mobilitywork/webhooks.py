"""Mobility Work webhooks: `X-MW-Signature: t=…,nonce=…,signature=…` over "t.nonce.body"."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import datetime
from typing import Any

import msgspec

from adapters.core.cloudevents_codec import stable_id
from adapters.core.vendor import EventDraft, WebhookRejected, WebhookRequest, WebhookUnparseable
from adapters.mobilitywork.undocumented import (
    EVENT_NAME_PREFIXES,
    EVENT_TYPES,
    SUBJECT_KEYS,
    MobilityWorkOptions,
)
from adapters.settings import InstanceConfig

HEADER = "x-mw-signature"


def signature(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `"<t>.<nonce>.<body>"` with the webhook's secret key."""
    message = timestamp.encode() + b"." + nonce.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def parse_header(value: str) -> tuple[str, str, str]:
    """(t, nonce, signature) from `t=…,nonce=…,signature=…`; raises WebhookRejected."""
    parts: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key.strip()] = val.strip()
    try:
        return parts["t"], parts["nonce"], parts["signature"]
    except KeyError:
        raise WebhookRejected("X-MW-Signature lacks t, nonce or signature") from None


def tolerance_s(instance: InstanceConfig) -> float:
    """How far a signed timestamp may be from now (options.signature_tolerance_s)."""
    return MobilityWorkOptions.of(instance).signature_tolerance_s


def verify(request: WebhookRequest, instance: InstanceConfig) -> str | None:
    """Check the signature, its age and (via the returned nonce) that it is not a replay.

    Without a configured secret Mobility Work sends no signature and every call is taken
    (the bridge says so loudly at start-up).
    """
    secret = instance.webhook_secret
    if secret is None or not secret.reveal():
        return None
    header = request.headers.get(HEADER)
    if not header:
        raise WebhookRejected("X-MW-Signature missing (a secret is configured)")
    stamp, nonce, given = parse_header(header)
    if not (stamp.isascii() and stamp.isdigit()) or not nonce:
        raise WebhookRejected("X-MW-Signature has a malformed timestamp or nonce")
    expected = signature(secret.reveal(), stamp, nonce, request.body)
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise WebhookRejected("X-MW-Signature does not match")
    skew = abs(time.time() - int(stamp))
    if skew > tolerance_s(instance):
        raise WebhookRejected(f"X-MW-Signature timestamp is {skew:.0f}s away from now")
    return nonce


def replay_window_s(instance: InstanceConfig) -> float:
    """A nonce is remembered as long as its timestamp could still be accepted (both ways)."""
    return 2 * tolerance_s(instance)


def _snake(name: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip())
    return "_".join(spaced.lower().split())


def event_type(event: str) -> tuple[str, str]:
    """(resource, verb) of an `_event`: the table first, then `<Subject>Was<Verb>`, then
    `<Resource><Verb>` for the resources Workbridge knows (`TaskCreated`)."""
    if event in EVENT_TYPES:
        return EVENT_TYPES[event]
    match = re.fullmatch(r"([A-Z][A-Za-z0-9]*?)Was([A-Z][A-Za-z0-9]*)", event)
    if match:
        return _snake(match.group(1)), _snake(match.group(2))
    for prefix in sorted(EVENT_NAME_PREFIXES, key=len, reverse=True):
        verb = event[len(prefix) :]
        if event.startswith(prefix) and re.fullmatch(r"[A-Z][A-Za-z0-9]*", verb):
            return EVENT_NAME_PREFIXES[prefix], _snake(verb)
    # Any other name is still published, under its own name.
    return "event", _snake(event) or "unknown"


def _subject(resource: str, payload: dict[str, Any], fallback: str) -> str:
    key = SUBJECT_KEYS.get(resource, re.sub(r"_([a-z])", lambda m: m.group(1).upper(), resource))
    obj = payload.get(key)
    if isinstance(obj, dict):
        for field in ("id", "uuid"):
            if obj.get(field) not in (None, ""):
                return f"{resource}/{obj[field]}"
    return f"{resource}/{fallback}"


def event_digest(payload: dict[str, Any]) -> str:
    """What identifies the event: its body without `_sentAt`, key order aside.

    Not the nonce: the vendor retries a failed delivery, and a retry may be signed anew (a
    new nonce) and carry a new `_sentAt`; it is still the same event, and gets the same id.
    So a repeat that reaches another receiver replica, or this one after a restart, is
    the same event id on the topic, and consumers drop it (README: webhook threat model).
    """
    event = {key: value for key, value in payload.items() if key != "_sentAt"}
    return hashlib.sha256(msgspec.json.encode(event, order="sorted")).hexdigest()


def to_events(request: WebhookRequest, instance: str) -> list[EventDraft]:
    """One event per webhook, typed from `_event`, timed by `emittedAt`."""
    try:
        payload = msgspec.json.decode(request.body)
    except msgspec.DecodeError as exc:
        raise WebhookUnparseable(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("_event"), str):
        raise WebhookUnparseable("body has no `_event`")
    resource, verb = event_type(payload["_event"])
    delivery = event_digest(payload)
    network = payload.get("networkId")
    when = None
    if isinstance(payload.get("emittedAt"), str):
        try:
            when = datetime.fromisoformat(payload["emittedAt"])
        except ValueError:
            when = None
        if when is not None and when.tzinfo is None:
            when = None  # an offset-less time cannot be placed; better none than a wrong one
    return [
        EventDraft(
            type=f"workbridge.mobilitywork.{resource}.{verb}",
            subject=_subject(resource, payload, delivery[:16]),
            id=stable_id(instance, "webhook", delivery),
            time=when,
            source=f"/mobilitywork/{network}" if network else None,
            data=request.body,
        )
    ]


class Envelope(msgspec.Struct, kw_only=True):
    """A Mobility Work webhook body: the envelope fields; resource objects are kept as sent."""

    type_: str = msgspec.field(name="_type")
    event: str = msgspec.field(name="_event")
    sent_at: str | None = msgspec.field(default=None, name="_sentAt")
    emittedAt: str | None = None  # the vendor's field name
    networkId: str | None = None  # the vendor's field name


def event_models() -> dict[str, type[msgspec.Struct]]:
    """Known event types (the document's example, the changelog's and task webhooks)."""
    known = [
        ("spare_part", "consumed"),
        ("spare_part", "consumption_canceled"),
        ("task", "created"),
        ("task", "updated"),
        ("task", "completed"),
    ]
    return {f"workbridge.mobilitywork.{r}.{v}": Envelope for r, v in known}
