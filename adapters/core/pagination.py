"""Reading pagination that vendors share: RFC 8288 `Link` headers."""

from __future__ import annotations

import re

# A link: `<url>` then `; param` pairs, where a quoted value may hold `;` and `,`.
_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*(?:[^;,"]|"[^"]*")+)*)')
_REL = re.compile(r'(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^";,\s]+))', re.IGNORECASE)


def link_url(header: str | None, rel: str = "next") -> str | None:
    """The URL of the `rel` link in a `Link` header, if there is one."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        rel_match = _REL.search(match.group(2) or "")
        values = (rel_match.group(1) or rel_match.group(2) or "") if rel_match else ""
        # Relation types compare case-insensitively (RFC 8288, 2.1.1).
        if rel.lower() in values.lower().split():
            return match.group(1)
    return None
