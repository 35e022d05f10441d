"""How CLOUDWORK|PRO's answers are judged, and its error envelope put into words.

The document: "CWP uses conventional HTTP response codes": 200 OK, 401 (no bearer token or
an expired one), 403 (the token lacks the permission), 404, 422 (the request's Content-Type
was not set correctly), 429 ("use an exponential backoff"), 500/502/503/504. "However, most
`400 Bad Request Errors` are handled in a different way": HTTP 200 with `"code": 400` in the
body and an `error` object `{code, message, detail}`, e.g.

    {"error": {"code": "WO_0005", "message": "The work types provided were not found in CWP
     platform", "detail": "..."}, "code": 400, "reason": "...", "data": {}, "success": true}

Note `"success": true` in that refusal: the body's `code` is what tells, not `success`. So an
HTTP 2xx is judged by its envelope first (the matchers below): a `code` of 400 (a number or
the string "400") is a permanent failure, never retried and never a success; so is any other
4xx code but the transient ones (408, 425, 429: retried), and a 5xx code is retried like the
HTTP status would be. `"success": false` is a failure whatever the code says, and an `error`
object without any `code` too. Only then does the HTTP status decide (a plain 2xx: success,
even when `data` is a sentence, as in the document's OK example).

The matchers look at 2xx answers only: a real 429 or 503 whose body happens to carry the
same envelope (`{"code": 503, "success": false}`) keeps its status's rule (retried), and the
client's one token renewal on an HTTP 401 happens before any rule is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.core.errors import Action, Answer, ErrorTable, Matcher, Rule, json_body

# --- the rules ---------------------------------------------------------------------------------

REFUSED = Rule(Action.FAIL, "CLOUDWORK|PRO refused the request")
# The client renews the token once on a 401 before this rule applies: a 401 that is left is
# credentials the token endpoint takes but the API does not, or a token it will not renew.
UNAUTHORIZED = Rule(
    Action.FAIL,
    "CLOUDWORK|PRO: token missing or expired: check the API credentials",
    alert=True,
)
FORBIDDEN = Rule(
    Action.FAIL,
    "CLOUDWORK|PRO: the token lacks the permission for this request (the Public API "
    "credentials' permissions)",
    alert=True,
)
NOT_FOUND = Rule(
    Action.FAIL,
    "not found at CLOUDWORK|PRO: no record with this id, or the path is not the vendor's "
    "(see options.command_paths)",
)
# The document: 422 "indicates that the request's Content-Type header was not set
# correctly". Workbridge sets it (JSON or form-data), so this is our defect, not bad data:
# logged at error level once rather than left in a result nobody reads.
WRONG_CONTENT_TYPE = Rule(
    Action.FAIL,
    "CLOUDWORK|PRO answered 422, which its document says means a wrong Content-Type header: "
    "a defect on Workbridge's side (please report it), not a problem of the command's data",
    alert=True,
)
RATE_LIMITED = Rule(Action.RETRY, "rate limited by CLOUDWORK|PRO (backing off)")
TRANSIENT = Rule(Action.RETRY, "CLOUDWORK|PRO asked to try again later")
# The document lists 503 with 500/502/504 ("Something went wrong on CWP's end") and does not
# say it means "not done": a create whose answer was a 503 is `ambiguous`, never repeated.
UNAVAILABLE = Rule(Action.RETRY, "CLOUDWORK|PRO unavailable", may_have_acted=True)
# 500/502/504 may come after the work was done: a create whose answer is lost is `ambiguous`.
SERVER_ERROR = Rule(
    Action.RETRY, "something went wrong on CLOUDWORK|PRO's end", may_have_acted=True
)
SAID_UNSUCCESSFUL = Rule(Action.FAIL, "CLOUDWORK|PRO answered success: false")
ERROR_WITHOUT_CODE = Rule(Action.FAIL, "CLOUDWORK|PRO answered with an error")

# The rule of a 4xx/5xx, whether it came as the HTTP status or as the `code` of a 200 body.
STATUS_RULES: dict[int, Rule] = {
    400: REFUSED,
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    408: TRANSIENT,
    422: WRONG_CONTENT_TYPE,
    425: TRANSIENT,
    429: RATE_LIMITED,
    500: SERVER_ERROR,
    502: SERVER_ERROR,
    503: UNAVAILABLE,
    504: SERVER_ERROR,
}


def _code_rule(code: int) -> Rule | None:
    """The rule of an envelope `code`: its own, else its class's; None for a 1xx-3xx."""
    if code in STATUS_RULES:
        return STATUS_RULES[code]
    if 400 <= code < 500:
        return REFUSED
    if 500 <= code < 600:
        return SERVER_ERROR
    return None


# --- the envelope ------------------------------------------------------------------------------


def envelope_code(body: Any) -> int | None:
    """The body's `code` as a number: `400` or `"400"`; None when there is no numeric one."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if isinstance(code, bool):  # a JSON true is no status code
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def _said_unsuccessful(body: dict[str, Any]) -> bool:
    success = body.get("success")
    return success is False or (isinstance(success, str) and success.strip().lower() == "false")


def envelope_rule(body: Any) -> Rule | None:
    """The rule a 2xx answer's body decides, or None when the body says nothing against it."""
    if not isinstance(body, dict):
        return None
    code = envelope_code(body)
    if code is not None:
        rule = _code_rule(code)
        if rule is not None:
            return rule
    if _said_unsuccessful(body):
        return SAID_UNSUCCESSFUL
    if code is None and body.get("error") not in (None, {}, "", []):
        return ERROR_WITHOUT_CODE
    return None


# The matchers ask for the same body's rule once per distinct rule: the last body's decoded
# rule is kept (checked by identity, so a different answer never reuses it), which keeps a
# page of a listing from being decoded a dozen times.
_last: tuple[bytes, Rule | None] | None = None


def _answer_rule(answer: Answer) -> Rule | None:
    global _last
    if not 200 <= answer.status < 300:
        return None
    seen = _last
    if seen is not None and seen[0] is answer.body:
        return seen[1]
    rule = envelope_rule(json_body(answer))
    _last = (answer.body, rule)
    return rule


def _is(rule: Rule) -> Callable[[Answer], bool]:
    return lambda answer: _answer_rule(answer) is rule


def _envelope_matchers() -> tuple[Matcher, ...]:
    rules: list[Rule] = []
    for rule in (*STATUS_RULES.values(), SAID_UNSUCCESSFUL, ERROR_WITHOUT_CODE):
        if all(rule is not r for r in rules):
            rules.append(rule)
    return tuple(Matcher(_is(rule), rule) for rule in rules)


# --- words -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return str(value).strip() if value not in (None, "", {}, []) else ""


def error_message(answer: Answer) -> str | None:
    """CLOUDWORK|PRO's error in words: `WO_0005: The work types provided were not found in CWP
    platform (This error happens when ...)`.

    The `error` object's code and message, then its detail when it adds something; without
    an error object the envelope's `reason` (with its `code` when that is not 200). None for
    a body that holds no error words (empty, HTML, a success).
    """
    body = json_body(answer)
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    reason = _text(body.get("reason"))
    if isinstance(error, dict):
        code = _text(error.get("code"))
        message = _text(error.get("message")) or reason
        detail = _text(error.get("detail"))
        text = f"{code}: {message}" if code and message else code or message
        if detail and detail != message:
            text = f"{text} ({detail})" if text else detail
        return text or None
    if isinstance(error, str) and error.strip():
        return error.strip()
    if not reason:
        return None
    code_said = envelope_code(body)
    return f"{code_said}: {reason}" if code_said not in (None, 200) else reason


ERRORS = ErrorTable(
    overrides={
        # "most" bad requests are a 200 with code 400: the others are a real 400.
        400: REFUSED,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: NOT_FOUND,
        422: WRONG_CONTENT_TYPE,
        429: RATE_LIMITED,
        500: SERVER_ERROR,
        502: SERVER_ERROR,
        503: UNAVAILABLE,
        504: SERVER_ERROR,
        # The document names no other 5xx: one may come after the work was done.
        "5xx": SERVER_ERROR,
    },
    matchers=_envelope_matchers(),
    describe=error_message,
)
