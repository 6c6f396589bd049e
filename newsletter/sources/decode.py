"""From a digest file's bytes to lines of text: BOMs, UTF-16, line endings, bad bytes.

Files are split into lines as bytes and each line is decoded on its own: most lines are
ASCII, which CPython decodes fastest, and an invalid byte then costs one line a warning
instead of the whole file.
"""

from __future__ import annotations

import codecs
import re

from newsletter.errors import DigestError
from newsletter.models import SourceWarning

_MAX_BAD_LINE_WARNINGS = 5

# Terminal escape sequences (CSI, as in colored terminal output pasted into a capture), then
# single C0 and C1 control characters other than tab and line feed; as UTF-8 bytes, C1 controls
# are 0xC2 0x80-0x9F. Controls have no place in a title or abstract and must never reach a mail
# header or a terminal.
_CONTROLS = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")
# Finding out whether there is any at all, fast (the regex above scans 20 MB in 150 ms; these
# take 25): a C0 control (an escape sequence starts with one) changes the length of a
# translate that deletes them; a C1 control starts with a literal byte the regex engine
# skips to.
_C0_BYTES = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])
_C1 = re.compile(rb"\xc2[\x80-\x9f]")


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
    if len(data.translate(None, _C0_BYTES)) != len(data) or _C1.search(data):
        data = _CONTROLS.sub(_without_control, data)
    return data


def _without_control(match: re.Match[bytes]) -> bytes:
    # An escape sequence goes entirely; a lone control becomes a space, so that the words it
    # separated stay apart.
    return b"" if len(match.group()) > 2 else b" "


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


def decode_cut(raw: bytes) -> str | None:
    """Like ``decode_line`` for the first bytes of a longer line: a character cut in two at
    the end is dropped."""
    for end in range(len(raw), max(len(raw) - 4, 0), -1):
        try:
            return raw[:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < end - 3:  # a bad byte well before the cut: not the cut's fault
                return None
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
