"""From a digest file's bytes to lines of text: BOMs, UTF-16, line endings, bad bytes.

Files are split into lines as bytes and each line is decoded on its own: most lines are
ASCII, which CPython decodes fastest, and an invalid byte then costs one line a warning
instead of the whole file.
"""

from __future__ import annotations

import codecs

from newsletter.errors import DigestError
from newsletter.models import SourceWarning

_MAX_BAD_LINE_WARNINGS = 5


def utf8_bytes(data: bytes) -> bytes:
    """The capture as UTF-8 bytes with LF line ends and no BOM; DigestError if it is empty
    or binary."""
    if not data or data.isspace():
        raise DigestError("the file is empty; capture the listing page again")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = _transcode_utf16(data)
    elif b"\x00" in data[:65536]:
        raise DigestError("this is a binary file, not a text capture of a listing page")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if b"\r" in data:
        # CRLF and lone CR (old Mac files) end lines too, as they do in any editor.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def _transcode_utf16(data: bytes) -> bytes:
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeError as exc:
        raise DigestError(f"the file claims UTF-16 but is not ({exc})") from exc


def decode_line(raw: bytes) -> str | None:
    """A line's text, or None when it is not valid UTF-8 (see ``decode_bad_line``)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_bad_line(raw: bytes) -> str:
    """An invalid line's text with each undecodable byte sequence replaced by U+FFFD."""
    return raw.decode("utf-8", errors="replace")


def bad_bytes_warnings(bad_lines: list[int], text_lines: int) -> list[SourceWarning]:
    """Warnings for lines with invalid UTF-8; DigestError when most of the file is invalid."""
    if not bad_lines:
        return []
    if len(bad_lines) * 4 > text_lines:  # mostly another encoding, or not text at all
        raise DigestError(
            f"the file is not UTF-8 text (undecodable bytes on {len(bad_lines)} lines, first "
            f"on line {bad_lines[0]}); save the capture as UTF-8"
        )
    hint = "invalid UTF-8 bytes replaced by '\ufffd' (save the capture as UTF-8)"
    warnings = [SourceWarning(number, hint) for number in bad_lines[:_MAX_BAD_LINE_WARNINGS]]
    if len(bad_lines) > _MAX_BAD_LINE_WARNINGS:
        more = len(bad_lines) - _MAX_BAD_LINE_WARNINGS
        warnings.append(SourceWarning(None, f"{more} more lines with invalid UTF-8 bytes"))
    return warnings
