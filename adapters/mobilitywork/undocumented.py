"""What the Mobility Work document does not give: one place, each overridable per instance.

Every entry is marked `# not in the vendor document`. Paths of the changelog's endpoints
are unknown: their commands stay off until `options.command_paths` names a path. The
instance options (`MobilityWorkOptions`, at the end) take their defaults from here.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from adapters.settings import VendorOptions

# `_event` names the document does not spell out, mapped to (resource, verb). The
# SparePartWasConsumed example is documented; the others are named only in the changelog.
EVENT_TYPES = {
    "SparePartWasConsumed": ("spare_part", "consumed"),  # documented
    "SparePartConsumptionWasCanceled": (
        "spare_part",
        "consumption_canceled",
    ),  # not in the vendor document
    "SparePartConsumptionWasCancelled": (
        "spare_part",
        "consumption_canceled",
    ),  # not in the vendor document
}

# Which payload object an event is about, by resource (camelCase key in the envelope).
SUBJECT_KEYS = {
    "spare_part": "sparePart",  # documented example
    "task": "task",  # documented example
    "equipment": "equipment",  # not in the vendor document
    "storage_location": "storageLocation",  # not in the vendor document
}

# Task creation: which of the six fields of the document's example are required is not said
# ("All required parameters must be provided"). A field the command leaves out is sent with
# its empty value, which is right whether the vendor requires it or not (`allDay` is always
# sent already: it defaults to false).
TASK_CREATE_DEFAULTS: dict[str, Any] = {"assignees": []}  # not in the vendor document

# How a bare string `equipment` (a native UUID, as Workbridge's command defines it) is sent.
# The document shows a bare identifier and the `{"type": …, "value": …}` object, tells to
# "favor the object format" to "prevent confusion", and names native ids `"type": "native"`
# in its 400 example; how the vendor reads a bare string (native id or item code) is not
# said. True: sent as `{"type": "native", "value": …}`; False: sent as the bare string.
NATIVE_STRING_EQUIPMENT_AS_OBJECT = True  # not in the vendor document

# `_event` names that are not `<Subject>Was<Verb>`: the task webhooks' names are not
# documented, and "TaskCreated" is as likely as "TaskWasCreated". A name that starts with a
# resource's name (in CamelCase, at a word boundary) is that resource's event, and the rest
# of the name is the verb: `TaskCreated` -> ("task", "created").
EVENT_NAME_PREFIXES = {  # not in the vendor document
    key[0].upper() + key[1:]: resource for resource, key in SUBJECT_KEYS.items()
}

# Changelog endpoints without a documented path or payload: (type, method, description).
UNDOCUMENTED_COMMANDS = [
    ("task.complete", "POST", "Mark a task as completed (changelog 2025-03-21)."),
    ("task.report_activity", "POST", "Report an activity on a task (changelog 2025-03-26)."),
    ("equipment.create", "POST", "Create equipment (changelog 2024-04-18)."),
    ("spare_part.recount_stock", "POST", "Recount spare-part stock (changelog 2024-06-13)."),
    ("spare_part.relocate", "POST", "Relocate spare parts (changelog 2024-02-29)."),
    ("storage_location.create", "POST", "Create a storage location (changelog 2024-02-23)."),
]  # not in the vendor document: paths and payloads

# How old (or how far in the future) a signed timestamp may be; the document suggests
# rejecting stale ones ("maybe from 1 hour ago") without a number.
DEFAULT_SIGNATURE_TOLERANCE_S = 300.0  # not in the vendor document

# "re-try the exact same call a few minutes later": the base of the command backoff.
RETRY_BASE_S = 60.0  # the document says "a few minutes"; the exact figures are guesses
RETRY_CAP_S = 600.0  # not in the vendor document
RETRY_DEADLINE_S = 3600.0  # not in the vendor document


class MobilityWorkOptions(VendorOptions, kw_only=True, forbid_unknown_fields=True):
    """Mobility Work's `options`."""

    network_name: Annotated[
        str,
        msgspec.Meta(
            description="the network's name, sent in the User-Agent as the document asks; "
            "required for commands (default: the instance name in the User-Agent)"
        ),
    ] = ""
    signature_tolerance_s: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="how far X-MW-Signature's timestamp may be from now, in seconds",
        ),
    ] = DEFAULT_SIGNATURE_TOLERANCE_S  # not in the vendor document
