"""How deeply a JSON document nests, found without decoding it.

Decoders recurse per level: a body of a few kilobytes of `[[[[…` raises `RecursionError`
deep inside them (and a traceback per request). Bodies are measured first and refused with
a reason when they nest deeper than any vendor payload would.
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 64

# Strings first, so that brackets inside them are not counted.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


def nests_deeper_than(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if `body`, read as JSON, opens more than `limit` arrays or objects at once."""
    # Fewer brackets than the limit cannot nest past it: the common case costs two counts.
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(body):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif first != 0x22:  # '"': a string
            depth = max(0, depth - 1)
    return False
