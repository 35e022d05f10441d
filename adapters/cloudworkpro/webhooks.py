"""CLOUDWORK|PRO webhooks: optional Basic authentication, and notifications as events.

Verification. The document: "CWP supports Basic Authentication when delivering webhook
notifications … you will be asked to provide the Basic Authentication username and password
… during onboarding", and deliveries come from two fixed addresses (the core enforces those
through `WebhookSpec.allowed_sources`). An instance that configures both
`credentials.webhook_user` and `credentials.webhook_password` (or their `_file` variants)
accepts only a request whose `Authorization: Basic …` carries exactly that pair, compared in
constant time; one that configures neither accepts any request from the allowed addresses;
one that configures only one of the two refuses every request (see `check_instance`), as
accepting unauthenticated deliveries is not what it asked for.

Mapping. A notification `{"_id", "event": "WORKORDER.CREATE", "created_date", "data": {the
record}}` (the field names are undocumented.py's guesses) becomes one event:

- type `workbridge.cloudworkpro.<thing>.<verb, past tense>`: `WORKORDER` → `work_order`,
  `SITE` → `site`, any other thing its snake-case form (`PURCHASE_ORDER`, `PurchaseOrder` →
  `purchase_order`); CREATE → created, UPDATE → updated, DELETE → deleted, another verb its
  past tense (`CLOSE` → closed, `ASSIGN` → assigned, `STATUS_CHANGE` → status_changed);
- subject `<resource>/<the record's _id>`;
- time: the notification's `created_date` ("use the `created_date` timestamp … to handle
  the ordering of events");
- data: the record as delivered, unknown fields kept;
- id: the record's version (`ids.change_event_id` of its `_id` and `updated_date`, else
  `created_date`), so that a push, its redeliveries, its recovery from the stored
  notifications and the poll of the same record version are one event id. A delete keeps
  the verb in its id: its record may carry the version of the last update, which is another
  event. Without a readable version: the notification's `_id`, else a digest of the body's
  JSON (key order and spacing aside, so a re-encoded copy is the same event).

The mapper is a pure function of the body (no clock, no headers): the missed-webhook
recovery maps stored notifications with it, and must get what the push got.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.cloudworkpro.ids import change_event_id, parse_time, record_version
from adapters.cloudworkpro.undocumented import (
    ID_FIELD,
    NOTIFICATION_DATA_FIELD,
    NOTIFICATION_EVENT_FIELD,
    NOTIFICATION_ID_FIELD,
    NOTIFICATION_TIME_FIELD,
    THINGS,
)
from adapters.core.cloudevents_codec import stable_id
from adapters.core.vendor import EventDraft, WebhookRejected, WebhookRequest, WebhookUnparseable
from adapters.settings import InstanceConfig

VENDOR = "cloudworkpro"
# The instance credentials of the Basic pair CLOUDWORK|PRO is given at onboarding.
USER_CREDENTIAL = "webhook_user"
PASSWORD_CREDENTIAL = "webhook_password"
AUTHORIZATION = "authorization"

# --- verification ------------------------------------------------------------------------------


def basic_credentials(instance: InstanceConfig) -> tuple[str, str] | None:
    """The configured (user, password), None when neither is; raises `WebhookRejected` when
    only one of them is (a half-configured pair authenticates nobody)."""
    user = instance.credentials.get(USER_CREDENTIAL)
    password = instance.credentials.get(PASSWORD_CREDENTIAL)
    if not user and not password:
        return None
    if not user or not password:
        raise WebhookRejected(
            f"only one of credentials.{USER_CREDENTIAL} and credentials.{PASSWORD_CREDENTIAL} "
            "is configured: webhooks are refused until both are"
        )
    return user.reveal(), password.reveal()


def _same(given: bytes, expected: str) -> bool:
    # Digests first: compare_digest's time still depends on the lengths, which would tell
    # the length of the password.
    return hmac.compare_digest(
        hashlib.sha256(given).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _basic_pair(header: str) -> tuple[bytes, bytes]:
    """(user, password) bytes of `Basic <base64(user:password)>`; raises WebhookRejected."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise WebhookRejected("the Authorization header is not Basic credentials")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(
            "the Authorization header's Basic credentials are not base64"
        ) from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise WebhookRejected("the Authorization header's Basic credentials lack `user:password`")
    return user, password


def verify(request: WebhookRequest, instance: InstanceConfig) -> str | None:
    """Check the Basic credentials when the instance configures them; raises
    `WebhookRejected` (401) with a message that holds no secret. No replay key: Basic
    authentication has no nonce, and a redelivery is recognised by its event id."""
    expected = basic_credentials(instance)
    if expected is None:
        return None
    header = request.headers.get(AUTHORIZATION, "")
    if not header.strip():
        raise WebhookRejected("Authorization missing (webhook Basic authentication is configured)")
    user, password = _basic_pair(header)
    # Both compared, always: which of the two was wrong is not told by the time taken.
    user_ok = _same(user, expected[0])
    password_ok = _same(password, expected[1])
    if not (user_ok and password_ok):
        raise WebhookRejected("the Basic credentials do not match the instance's")
    return None


def check_instance(instance: InstanceConfig) -> tuple[str, str] | None:
    """(key, problem) when the Basic pair is half configured, for `VendorSpec.check_instance`."""
    has_user = bool(instance.credentials.get(USER_CREDENTIAL))
    has_password = bool(instance.credentials.get(PASSWORD_CREDENTIAL))
    if has_user != has_password:
        missing = PASSWORD_CREDENTIAL if has_user else USER_CREDENTIAL
        return (
            f"credentials.{missing}",
            f"webhook Basic authentication needs both credentials.{USER_CREDENTIAL} and "
            f"credentials.{PASSWORD_CREDENTIAL}",
        )
    return None


def startup_warnings(instance: InstanceConfig) -> list[str]:
    """What an operator must hear: webhooks taken without Basic authentication."""
    if instance.credentials.get(USER_CREDENTIAL) or instance.credentials.get(PASSWORD_CREDENTIAL):
        return []
    warnings = [
        f"{instance.instance_name}: CLOUDWORK|PRO webhooks are accepted without Basic "
        f"authentication (only the source addresses are checked): set "
        f"credentials.{USER_CREDENTIAL} and credentials.{PASSWORD_CREDENTIAL} to the pair "
        "given to CLOUDWORK|PRO"
    ]
    if instance.webhook_secret:
        warnings.append(
            f"{instance.instance_name}: webhook_secret is not used by CLOUDWORK|PRO webhooks "
            f"(they use credentials.{USER_CREDENTIAL} and credentials.{PASSWORD_CREDENTIAL})"
        )
    return warnings


# --- event types -------------------------------------------------------------------------------

VERBS = {"CREATE": "created", "UPDATE": "updated", "DELETE": "deleted"}
# Past tenses that the rules below get wrong.
IRREGULAR = {
    "send": "sent",
    "set": "set",
    "reset": "reset",
    "submit": "submitted",
    "stop": "stopped",
    "begin": "begun",
    "pay": "paid",
}


def snake(name: str) -> str:
    """`PURCHASE_ORDER`, `PurchaseOrder`, `purchase-order` → `purchase_order`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return "_".join(part for part in re.split(r"[^A-Za-z0-9]+", spaced) if part).lower()


def past_tense(verb: str) -> str:
    """CREATE → created, CLOSE → closed, ASSIGN → assigned, COPY → copied; of several words
    the last one (STATUS_CHANGE → status_changed); already past (COMPLETED) as it is."""
    if verb.strip().upper() in VERBS:
        return VERBS[verb.strip().upper()]
    words = snake(verb).split("_")
    last = words[-1]
    if last in IRREGULAR:
        last = IRREGULAR[last]
    elif last.endswith("ed"):
        pass
    elif last.endswith("e"):
        last += "d"
    elif len(last) > 1 and last.endswith("y") and last[-2] not in "aeiou":
        last = last[:-1] + "ied"
    elif last:
        last += "ed"
    return "_".join([*words[:-1], last])


def event_type(event: str) -> tuple[str, str]:
    """(resource, past-tense verb) of `<THING>.<VERB>`; a name without a dot is the verb of
    the resource `event` (still published, never dropped)."""
    thing, dot, verb = event.strip().partition(".")
    if not dot:
        thing, verb = "", thing
    resource = THINGS.get(thing.strip().upper()) or snake(thing) or "event"
    return resource, past_tense(verb) or "unknown"


# --- events ------------------------------------------------------------------------------------


def body_digest(payload: Any) -> str:
    """What identifies a notification without any id: its JSON, key order aside."""
    return hashlib.sha256(msgspec.json.encode(payload, order="sorted")).hexdigest()


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _event_id(
    instance: str, resource: str, verb: str, record: dict[str, Any], payload: dict[str, Any]
) -> str:
    version = record_version(record)
    if version is not None:
        record_id, changed = version
        if verb != "deleted":
            return change_event_id(instance, resource, record_id, changed)
        when = changed.astimezone(UTC).isoformat()
        return stable_id(instance, "change", resource, record_id, when, verb)
    notification_id = payload.get(NOTIFICATION_ID_FIELD)
    if notification_id not in (None, ""):
        return stable_id(instance, "notification", str(notification_id))
    return stable_id(instance, "notification-body", body_digest(payload))


# The notification's shape is not in the document: the guessed names first, then the ones a
# reasonable vendor might use.
EVENT_FIELDS = (NOTIFICATION_EVENT_FIELD, "type", "event_type", "eventType", "name")
RECORD_FIELDS = (NOTIFICATION_DATA_FIELD, "payload", "record", "object")


def _first_text(payload: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = payload.get(name)
        if isinstance(value, str) and "." in value and value.strip():
            return value.strip()
    for name in names:  # a name without a dot still says something
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _record(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The record a notification is about: its `data` (or a like-named field); one wrapped
    once more (`{"workorder": {...}}`) is unwrapped."""
    for name in RECORD_FIELDS:
        value = payload.get(name)
        if isinstance(value, dict):
            inner = list(value.values())
            if len(value) == 1 and isinstance(inner[0], dict) and ID_FIELD not in value:
                return inner[0]
            return value
    return None


def to_events(request: WebhookRequest, instance: str) -> list[EventDraft]:
    """One event per notification; raises `WebhookUnparseable` for a body that is not a JSON
    notification with an event name and a record (it goes to the DLQ, answered 200)."""
    try:
        payload = msgspec.json.decode(request.body)
    except msgspec.DecodeError as exc:
        raise WebhookUnparseable(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookUnparseable("body is not a JSON object")
    event = _first_text(payload, EVENT_FIELDS)
    if event is None:
        raise WebhookUnparseable(f"body has no event name (looked for {', '.join(EVENT_FIELDS)})")
    record = _record(payload)
    if record is None:
        raise WebhookUnparseable(
            f"body has no record (an object; looked in {', '.join(RECORD_FIELDS)})"
        )
    resource, verb = event_type(event)
    record_id = record.get(ID_FIELD)
    if record_id in (None, ""):
        record_id = record.get("id")
    if record_id in (None, ""):
        # Still published (nothing is dropped); the subject is then the notification's.
        record_id = payload.get(NOTIFICATION_ID_FIELD) or body_digest(payload)[:16]
    version = record_version(record)
    return [
        EventDraft(
            type=f"workbridge.{VENDOR}.{resource}.{verb}",
            subject=f"{resource}/{record_id}",
            id=_event_id(instance, resource, verb, record, payload),
            time=_time(payload.get(NOTIFICATION_TIME_FIELD)) or (version[1] if version else None),
            data=msgspec.json.encode(record),
        )
    ]
