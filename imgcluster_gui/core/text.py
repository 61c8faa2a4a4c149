"""File names as text that is safe to show: on a terminal, in a log line, in a one-line message.

A file name on Linux is any bytes but ``/`` and NUL.  Python keeps the bytes that are not valid
UTF-8 as lone surrogates (``surrogateescape``), which a strict UTF-8 stream refuses to encode (the
print raises ``UnicodeEncodeError``), and a name may hold control characters: a newline forges a
second line of a summary, ``ESC ] 0 ; ... BEL`` retitles the terminal, ``ESC [ 2 J`` clears it.

:func:`printable_text` writes each such character as a visible escape instead (``\\xff``,
``\\x1b``, ``\\n``, ``\\u202e``), so what reaches the person is one line of encodable text that
shows every byte of the name.  The escaping is for display only: it is not reversible (a name
that really holds a backslash followed by ``x1b`` prints the same), so files are never reopened
from it; programs keep the real ``str`` path (``os.fsencode`` gives the original bytes back).
"""

from __future__ import annotations

import os
import unicodedata
from typing import Union

# Unicode categories shown as escapes: controls (C0, DEL, C1), format characters (bidirectional
# overrides such as U+202E turn "gpj.exe" into "exe.jpg" on screen), line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# The usual short forms, easier to read than \x0a.
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(char: str) -> bool:
    # Any surrogate is unencodable in UTF-8; the categories above are invisible or act on the terminal.
    return 0xD800 <= ord(char) <= 0xDFFF or unicodedata.category(char) in _ESCAPED_CATEGORIES


def printable_text(text: str) -> str:
    """``text`` with undecodable bytes and control or format characters written as escapes.

    Parameters
    ----------
    text : str
        Any text that may hold a file name (a skip reason, an error message, a note).

    Returns
    -------
    str
        One line, encodable as UTF-8; printable characters (accents, CJK, emoji) are kept as they are.
    """
    if text.isprintable() and text.isascii():  # the common case: nothing to look at
        return text
    return "".join(_escape_char(c) if _needs_escape(c) else c for c in text)


def printable_path(path: Union[str, bytes, os.PathLike]) -> str:
    """A path as one line of displayable text (see :func:`printable_text`).

    Parameters
    ----------
    path : str, bytes or path-like
        Bytes are decoded the way the file system does (``os.fsdecode``: undecodable bytes become
        surrogate escapes, then ``\\xNN`` here).

    Returns
    -------
    str
        The path for display; never for reopening the file.
    """
    return printable_text(os.fsdecode(os.fspath(path)))
