"""A request body sent as `multipart/form-data` (CLOUDWORK|PRO's document uploads).

A command's build returns it as `PreparedCall.json`; the client sends it as form-data (with
the boundary aiohttp chooses) instead of JSON. It is built anew for every attempt, so a
retry sends the whole body again.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class FormPart:
    """One field of the form: a value, or a file (`filename`, `content_type`)."""

    name: str
    value: bytes | str
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Multipart:
    """The parts of a form-data body, in order."""

    parts: tuple[FormPart, ...]

    def form(self) -> aiohttp.FormData:
        """A fresh aiohttp form for one attempt."""
        # Multipart even with text fields only (a document sent by `url`): aiohttp would
        # otherwise send such a form urlencoded.
        form = aiohttp.FormData(default_to_multipart=True)
        for part in self.parts:
            form.add_field(
                part.name, part.value, filename=part.filename, content_type=part.content_type
            )
        return form

    def __repr__(self) -> str:
        # Never the content (a document's bytes) in a log line.
        shown = ", ".join(f"{p.name}={p.filename or '…'}" for p in self.parts)
        return f"Multipart({shown})"
