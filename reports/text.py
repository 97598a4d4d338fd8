"""Text from a document (or a user) made safe to print anywhere the toolkit prints it.

Target names, notes, paths and error messages come from users and from documents nobody
vouches for. Printed raw, a newline breaks the one-line promise and can inject a CI
workflow command (``\\n::error::``), U+202E reverses what a reader sees, and lone
surrogates or U+FFFE cannot be encoded at all (a crash, or an ill-formed junit.xml).
:func:`printable` shows each such character as its escape (``\\u202e``) instead.
"""

from __future__ import annotations

import unicodedata

# Cc: controls (C0, DEL, C1); Cf: format characters (bidi overrides and isolates, zero-width
# joiners, BOM); Cs: lone surrogates; Co: private use; Cn: unassigned and non-characters;
# Zl/Zp: line and paragraph separators.
_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` with every control, format, direction, surrogate and unassigned character escaped."""
    s = text if isinstance(text, str) else str(text)
    if s.isascii() and s.isprintable():
        return s  # the common case, fast
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in s)
