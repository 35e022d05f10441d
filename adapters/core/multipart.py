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

    def form(self) -> aiohttp.MultipartWriter:
        """A fresh multipart body for one attempt. Built with aiohttp's public
        `MultipartWriter`: multipart even with text fields only (a document sent by `url`),
        which `FormData` would send urlencoded."""
        writer = aiohttp.MultipartWriter("form-data")
        for part in self.parts:
            headers = {"Content-Type": part.content_type} if part.content_type else None
            payload = writer.append(part.value, headers)
            if part.filename is None:
                payload.set_content_disposition("form-data", name=part.name)
            else:
                payload.set_content_disposition("form-data", name=part.name, filename=part.filename)
        return writer

    def __repr__(self) -> str:
        # Never the content (a document's bytes) in a log line.
        shown = ", ".join(f"{p.name}={p.filename or '…'}" for p in self.parts)
        return f"Multipart({shown})"
