"""Untrusted text made safe to print on a terminal.

Titles, authors and search results come from the site, and book details from manifests and
folder names on disk; printed raw, an escape sequence in them would retitle the window, clear
the screen or start blinking, a right-to-left override would reverse what follows, and a newline
would forge an output line of ours. Every such string passes through :func:`visible` before it
is printed, in plain lines and the live view alike. File names are a separate matter, handled by
:mod:`tokysnatcher.utils.filenames`.
"""

from __future__ import annotations

import re

from tokysnatcher.utils.filenames import BIDI_CONTROLS

#: Bidirectional overrides, embeddings, isolates and marks: "evil\u202egnp.mp3" would show as
#: "evil3pm.png".

# C0 and C1 controls (ESC, BEL, newline, the 8-bit CSI...), DEL, the line and paragraph
# separators, bidi controls and lone surrogates.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff" + "".join(sorted(BIDI_CONTROLS)) + "]"
)


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]  # Python's own spelling: \x1b, \n, \u202e


def visible(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape.

    ``"a\\x1b[2Jb"`` prints as ``a\\x1b[2Jb``, backslash included: the reader sees that the
    text holds something odd, and the terminal receives nothing but printable characters.
    """
    return _UNSAFE.sub(_escaped, text)
