"""How CMO's answers are judged, and its error bodies put into words.

The document gives: 400 with `{"message": "Model can't be processed due to following errors",
"errors": [{"field": "OrgUnitName", "messages": ["System is unable to find object …"]}]}` for
bad data, 400 with `{"message": "You cannot delete Actions created by Event Workflow"}` for a
refused delete, and 403 when the user lacks the action's role permission. 401 and 404 are not
in the document; CMO is an ASP.NET application, whose own errors (a refused token, a route
that does not exist) come as `{"Message": …}` (and a model state as `"ModelState"`), so the
envelope is read without regard to the case of its keys.

The rules are per status: `Rule` and `describe` see the answer, not the request, so the 403
reason names the permission of each command type.
"""

from __future__ import annotations

from typing import Any

from adapters.core.errors import Action, Answer, ErrorTable, Rule, json_body

FORBIDDEN = (
    "forbidden: the CMO user lacks the role permission for this call (Admin > Roles > Action "
    "Permissions: 'Allow Create via API' for a create, 'Allow Edit via API' for an update, "
    "'Allow Delete via API' for a delete; the document names 'Allow Edit via API' for a "
    "read too)"
)


def error_message(answer: Answer) -> str | None:
    """CMO's error body in words: its message, then each field error as `Field: message`.

    `Model can't be processed due to following errors: OrgUnitName: System is unable to find
    object based on the provided name(s). (Values: Albama)`. None for a body that is no error
    envelope (empty, HTML, an id).
    """
    body = json_body(answer)
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    keys = {str(k).lower(): v for k, v in body.items()}
    message = keys.get("message")
    text = str(message).strip().rstrip(":") if message not in (None, "") else ""
    problems = _field_errors(keys.get("errors")) + _model_state(keys.get("modelstate"))
    if not text and not problems:
        return None
    if not problems:
        return text
    listed = "; ".join(problems)
    if not text:
        return listed
    # "…following errors: OrgUnitName: …", but "The request is invalid. Field: …".
    return f"{text}{' ' if text.endswith(('.', '!', '?')) else ': '}{listed}"


def _field_errors(errors: Any) -> list[str]:
    """`[{"field", "messages"}]` as `Field: message`, one per message."""
    if not isinstance(errors, list):
        return []
    out = []
    for error in errors:
        if not isinstance(error, dict):
            out.append(str(error))
            continue
        keys = {str(k).lower(): v for k, v in error.items()}
        out += _pairs(keys.get("field"), keys.get("messages", keys.get("message")))
    return out


def _model_state(state: Any) -> list[str]:
    """ASP.NET Web API's `{"ModelState": {"field": ["message"]}}`."""
    if not isinstance(state, dict):
        return []
    return [p for field, messages in state.items() for p in _pairs(field, messages)]


def _pairs(field: Any, messages: Any) -> list[str]:
    said = messages if isinstance(messages, list) else [messages]
    texts = [str(m) for m in said if m not in (None, "")] or ["invalid"]
    name = str(field) if field not in (None, "") else ""
    return [f"{name}: {m}" if name else m for m in texts]


ERRORS = ErrorTable(
    overrides={
        # Bad data (each field's error quoted by `describe`) or a refused delete: the same
        # request will be refused again.
        400: Rule(Action.FAIL, "CMO refused the request"),
        # The client renews a JWT once on a 401 before this rule applies: a 401 that is left
        # is credentials CMO does not take.
        401: Rule(
            Action.FAIL,
            "CMO rejected the credentials: check credentials.login and credentials.password "
            "(jwt), credentials.token (token) or the tls client certificate (mtls)",
            alert=True,
        ),
        403: Rule(Action.FAIL, FORBIDDEN, alert=True),
        404: Rule(
            Action.FAIL,
            "not found at CMO: no action with this id (deleted in the meantime?), or base_url "
            "is not the cmo-base-url",
        ),
        # The document does not say that a 503 means nothing was done: like every 5xx it may
        # come after CMO acted, so a create is `ambiguous`, never repeated.
        503: Rule(Action.RETRY, "CMO unavailable", may_have_acted=True),
    },
    # Everything else is the default table: other 4xx fail at once, 408/429/5xx are retried.
    describe=error_message,
)
