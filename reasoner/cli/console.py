"""The terminal every command prints to: model and server text cannot drive it.

Text from a model or a server may carry escape sequences that change the window title, clear the
screen, plant hyperlinks, or move the cursor to overwrite what was printed. `SafeConsole` removes
them, and every other control character but newline and tab, from whatever it renders, and masks
known secrets (`reasoner.secrets.scrub`) on the way, so no print path has to remember to.
Rich's own styling and cursor control are kept: they are not in the text, they come as styles
and control segments. Build a `Text` from untrusted text with `Text(clean(s))`: rich's Text drops
BEL, which may be what ends an OSC sequence, and after that only its introducer can be removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from reasoner.secrets import scrub

# Whole escape sequences first, so no "[2J" or "]0;title" is left behind when ESC goes:
# CSI (ESC [ or C1 0x9b) ... final byte; OSC, DCS, SOS, PM, APC (ESC ] P X ^ _ or C1) up to BEL or
# ST (unterminated, only its introducer goes: rich drops BEL, and the text after it must not go
# too); any other ESC plus one character. Then every remaining C0/C1 control except \t and \n, and
# the bidirectional overrides that make text read differently from what it holds. A body never
# runs past another introducer, so the scan stays linear in the text.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x90\x98\x9c-\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b.?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]",
    re.S,
)


def clean(text: str) -> str:
    """`text` safe to show: no terminal control sequences, no known secrets."""
    return scrub(_ESCAPES.sub("", text))


class SafeConsole(Console):
    """A rich Console that cleans every string and Text before laying it out, and every text
    segment after (a renderable that makes its own segments, such as JSON, is covered too)."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        if isinstance(renderable, str):
            renderable = clean(renderable)
        elif isinstance(renderable, Text):
            renderable = self._clean_text(renderable)
        for segment in super().render(renderable, options):
            if segment.control is None and segment.text:
                cleaned = clean(segment.text)
                if cleaned != segment.text:
                    segment = Segment(cleaned, segment.style)
            yield segment

    def _clean_text(self, text: Text) -> Text:
        if clean(text.plain) == text.plain:
            return text
        # Piece by piece, so the styles stay on what is left of each piece.
        out = Text(justify=text.justify, overflow=text.overflow, no_wrap=text.no_wrap, end=text.end)
        for piece in text.render(self, end=""):
            out.append(_ESCAPES.sub("", piece.text), piece.style)
        if scrub(out.plain) != out.plain:  # a secret across pieces: mask it, losing the styles
            return Text(scrub(out.plain), style=text.style, end=text.end)
        return out

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(clean(text), **kwargs)


console = SafeConsole()
err_console = SafeConsole(stderr=True)
