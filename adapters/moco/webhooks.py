"""MOCO webhooks: hex HMAC-SHA256 of the raw body in `X-Moco-Signature`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.core.cloudevents_codec import stable_id
from adapters.core.vendor import EventDraft, WebhookRejected, WebhookRequest, WebhookUnparseable
from adapters.moco.ids import change_event_id, parse_time
from adapters.moco.undocumented import TARGET_RESOURCES
from adapters.settings import InstanceConfig

SIGNATURE_HEADER = "x-moco-signature"


def signature(secret: str, body: bytes) -> str:
    """What MOCO puts in `X-Moco-Signature` for `body`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(request: WebhookRequest, instance: InstanceConfig) -> str | None:
    """Accept only a body signed with the instance's webhook key (constant-time compare).

    MOCO signs the body only, with no nonce or timestamp: there is no replay key, and
    replays are recognised by the event id (a digest of what is signed).
    """
    secret = instance.webhook_secret
    given = request.headers.get(SIGNATURE_HEADER, "")
    if secret is None or not secret.reveal():
        raise WebhookRejected("no webhook_secret configured for this MOCO instance")
    if not given:
        raise WebhookRejected("X-Moco-Signature missing")
    expected = signature(secret.reveal(), request.body)
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise WebhookRejected("X-Moco-Signature does not match the body")
    return None


@functools.lru_cache(maxsize=256)
def snake(name: str) -> str:
    """`PurchaseDraft` → `purchase_draft`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip())
    return "_".join(spaced.lower().split())


@functools.lru_cache(maxsize=256)
def past_tense(verb: str) -> str:
    """MOCO's event verbs (create, update, delete, archive, ...) as past tense."""
    verb = snake(verb)
    if verb.endswith("e"):
        return f"{verb}d"
    return f"{verb}ed"


def _event_id(
    instance: str, resource: str, action: str, payload: dict[str, Any], body: bytes
) -> str:
    """The change's id, which the poll of the same version gets too (ids.py); for a delete,
    or a body without a readable `updated_at`, an id from the signed body and the verb (a
    delete may carry the same body as the last update)."""
    updated_at = payload.get("updated_at")
    if action.lower() != "delete" and isinstance(updated_at, str):
        with contextlib.suppress(ValueError):
            return change_event_id(instance, resource, payload["id"], parse_time(updated_at))
    return stable_id(instance, "webhook", resource, action, hashlib.sha256(body).digest())


def to_events(request: WebhookRequest, instance: str) -> list[EventDraft]:
    """One event per webhook; the type comes from X-Moco-Target and X-Moco-Event."""
    target = request.headers.get("x-moco-target", "").strip()
    action = request.headers.get("x-moco-event", "").strip()
    if not target or not action:
        raise WebhookUnparseable("X-Moco-Target or X-Moco-Event missing")
    try:
        payload = msgspec.json.decode(request.body)
    except msgspec.DecodeError as exc:
        raise WebhookUnparseable(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or "id" not in payload:
        raise WebhookUnparseable("body is not a MOCO record with an id")
    resource = TARGET_RESOURCES.get(target, snake(target))
    stamp = request.headers.get("x-moco-timestamp", "")
    when = None
    if stamp.isdigit():
        with contextlib.suppress(ValueError, OverflowError, OSError):
            when = datetime.fromtimestamp(int(stamp) / 1000, tz=UTC)
    extensions = {}
    user = request.headers.get("x-moco-user-id")
    if user:
        # Lets consumers tell the echo of Workbridge's own commands (its API user) apart.
        extensions["vendoruserid"] = user
    return [
        EventDraft(
            type=f"workbridge.moco.{resource}.{past_tense(action)}",
            subject=f"{resource}/{payload['id']}",
            id=_event_id(instance, resource, action, payload, request.body),
            time=when,
            data=request.body,
            extensions=extensions,
        )
    ]
