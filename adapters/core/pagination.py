"""Reading pagination that vendors share: RFC 8288 `Link` headers."""

from __future__ import annotations

import re

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";]+)"?')


def link_url(header: str | None, rel: str = "next") -> str | None:
    """The URL of the `rel` link in a `Link` header, if there is one."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        params = match.group(2) or ""
        rel_match = _REL.search(params)
        if rel_match and rel in rel_match.group(1).split():
            return match.group(1)
    return None
