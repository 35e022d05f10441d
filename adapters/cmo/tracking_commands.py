"""Commands that tell the watch which actions to follow, and the tracking side of the others.

CMO cannot be listed, so the watch (resources.py) reads the actions Workbridge knows. A
create's new id joins it; `workbridge.cmo.action.track` adds an existing action (read once,
so an id CMO does not have fails instead of being watched for nothing), and `.untrack` drops
one (no call to CMO). An update or delete names itself as the cause of the change the watch
reads next (`causedby`, for consumers that skip their own echoes): announced, unsettled,
with the command's in-flight mark (before the request leaves, so no read can see the change
before its cause), and settled with its result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from adapters.cmo.undocumented import ACTION_PATH
from adapters.core.command_result import CommandResult
from adapters.core.rest_command import rest_command
from adapters.core.track_change import TrackChange
from adapters.core.vendor import CommandSpec, PreparedCall

PREFIX = "workbridge.cmo.action"
ActionId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class TrackAction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Watch an existing action: its changes become events from now on."""

    id: ActionId


class UntrackAction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Stop watching an action (nothing is sent to CMO)."""

    id: ActionId


def _id_of(data: msgspec.Struct) -> str | None:
    value = getattr(data, "id", None)
    return None if value is None else str(value)


def _created(data: msgspec.Struct, result: CommandResult, command_id: str) -> TrackChange | None:
    response = result.response
    if result.status != "succeeded" or not isinstance(response, dict):
        return None
    new_id = response.get("id")
    return TrackChange(id=str(new_id), caused_by=command_id) if new_id else None


def _changed(data: msgspec.Struct, result: CommandResult, command_id: str) -> TrackChange | None:
    # Settled whatever the outcome: a read that shows no change (a refused update) uses the
    # echo up. `tracked=None`: an update neither starts nor stops a watch.
    rid = _id_of(data)
    return None if rid is None else TrackChange(id=rid, tracked=None, caused_by=command_id)


def _tracked(data: msgspec.Struct, result: CommandResult, command_id: str) -> TrackChange | None:
    rid = _id_of(data)
    return TrackChange(id=rid) if result.status == "succeeded" and rid is not None else None


def _untracked(data: msgspec.Struct, result: CommandResult, command_id: str) -> TrackChange | None:
    rid = _id_of(data)
    return TrackChange(id=rid, tracked=False) if rid is not None else None


def _untrack_build(data: msgspec.Struct) -> PreparedCall:
    return PreparedCall(method="NONE", path="")


def _untrack_answer(data: Any) -> Any:
    return {"id": data.get("id") if isinstance(data, dict) else None, "tracked": False}


TRACK = rest_command(
    f"{PREFIX}.track",
    TrackAction,
    "GET",
    ACTION_PATH,
    kind="action",
    repeat_safe=True,
    description=TrackAction.__doc__ or "",
)
TRACK = dataclasses.replace(TRACK, track=_tracked)

UNTRACK = CommandSpec(
    type=f"{PREFIX}.untrack",
    model=UntrackAction,
    method="NONE",
    path="",
    kind="action",
    build=_untrack_build,
    repeat_safe=True,
    description=UntrackAction.__doc__ or "",
    answer=_untrack_answer,
    track=_untracked,
    local=True,
)

# Which of the vendor commands feed the watch, and how.
HOOKS = {
    f"{PREFIX}.create": _created,
    f"{PREFIX}.update": _changed,
    f"{PREFIX}.delete": _changed,
}


# Commands whose change of a watched action is announced before the call leaves (echo).
ECHOED = frozenset({f"{PREFIX}.update", f"{PREFIX}.delete"})


def with_tracking(catalogue: Mapping[str, CommandSpec]) -> dict[str, CommandSpec]:
    """The vendor catalogue with its tracking hooks, plus track and untrack."""
    hooked = {
        t: dataclasses.replace(spec, track=HOOKS[t], echo=_id_of if t in ECHOED else spec.echo)
        if t in HOOKS
        else spec
        for t, spec in catalogue.items()
    }
    return {**hooked, TRACK.type: TRACK, UNTRACK.type: UNTRACK}
