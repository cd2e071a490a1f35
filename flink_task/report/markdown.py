"""A short Markdown summary: a heading, a two-column table and an optional code block.

GitHub renders it on the run's summary page and Azure DevOps on the run's Extensions
tab. Values are escaped so that they show as plain text: the characters that start
inline Markdown or HTML are backslash-escaped (CommonMark allows a backslash before
any ASCII punctuation), ``|`` cannot end a cell early, and line breaks become
``<br>`` because a table row must stay on one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_CELL_CHARS = 300
MAX_DETAILS_CHARS = 60_000

# \ ` * _ [ ] < > & | ~ ! # start emphasis, code, links, images, HTML, entities,
# strikethrough or headings, or end a table cell.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~!#])")
_BACKTICK_RUN = re.compile(r"`+")


def escape_inline(text: str, max_chars: int = MAX_CELL_CHARS) -> str:
    """Escape text for a heading or a table cell, cutting it to ``max_chars`` characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > max_chars:
        text = f"{text[:max_chars]}... ({len(text) - max_chars} more characters)"
    lines = [_INLINE_SPECIAL.sub(r"\\\1", line) for line in text.split("\n")]
    return "<br>".join(lines)


def fenced_block(text: str, max_chars: int = MAX_DETAILS_CHARS) -> str:
    """Return text in a fenced code block whose fence no backtick run inside can close."""
    if len(text) > max_chars:
        text = f"{text[:max_chars]}\n... ({len(text) - max_chars} more characters)"
    longest_run = max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)
    fence = "`" * max(3, longest_run + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def render_summary(
    title: str,
    rows: Sequence[tuple[str, str]],
    details: str | None,
    details_title: str = "Job output",
) -> str:
    """Return the Markdown of one summary; it ends with a blank line."""
    parts = [f"### {escape_inline(title).replace('<br>', ' ')}\n\n"]
    if rows:
        parts.append("| Field | Value |\n|---|---|\n")
        parts.extend(
            f"| {escape_inline(name)} | {escape_inline(value)} |\n" for name, value in rows
        )
        parts.append("\n")
    if details:
        parts.append(f"#### {escape_inline(details_title)}\n\n")
        parts.append(fenced_block(details))
        parts.append("\n")
    return "".join(parts)
