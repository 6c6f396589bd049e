"""Turn a digest file's bytes into text, tolerating BOMs, UTF-16 and stray bad bytes."""

from __future__ import annotations

import codecs

from newsletter.errors import DigestError
from newsletter.models import SourceWarning

_MAX_BAD_LINE_WARNINGS = 5


def decode_text(data: bytes) -> tuple[str, list[SourceWarning]]:
    """Decode a capture; raise DigestError for empty or binary files, warn about bad bytes."""
    if not data.strip():
        raise DigestError("the file is empty; capture the listing page again")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_utf16(data), []
    if b"\x00" in data[:65536]:
        raise DigestError("this is a binary file, not a text capture of a listing page")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return _decode_lossy(data)


def _decode_utf16(data: bytes) -> str:
    try:
        return data.decode("utf-16")
    except UnicodeDecodeError as exc:
        raise DigestError(f"the file claims UTF-16 but is not ({exc.reason})") from exc


def _decode_lossy(data: bytes) -> tuple[str, list[SourceWarning]]:
    """Replace undecodable bytes, warning per line, unless the file is mostly not UTF-8."""
    text = data.decode("utf-8-sig", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    bad = [number for number, line in enumerate(lines, 1) if "\ufffd" in line]
    if text.count("\ufffd") > max(16, len(text) // 20):
        raise DigestError(
            f"the file is not UTF-8 text (undecodable bytes on {len(bad)} lines, "
            f"first on line {bad[0]}); save the capture as UTF-8"
        )
    hint = "invalid UTF-8 bytes replaced by '\ufffd' (save the capture as UTF-8)"
    warnings = [SourceWarning(no, hint) for no in bad[:_MAX_BAD_LINE_WARNINGS]]
    if len(bad) > _MAX_BAD_LINE_WARNINGS:
        more = len(bad) - _MAX_BAD_LINE_WARNINGS
        warnings.append(SourceWarning(None, f"{more} more lines with invalid UTF-8 bytes"))
    return text, warnings
