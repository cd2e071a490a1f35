r"""A short Markdown summary: a heading, a two-column table and an optional code block.

GitHub renders it on the run's summary page and Azure DevOps on the run's Extensions
tab. Everything shows as the text it is:

* the title and field names have the characters that start inline Markdown or HTML
  backslash-escaped (CommonMark allows a backslash before any ASCII punctuation);
* each line of a value is a code span, so nothing in it becomes a link, HTML or
  emphasis (GitHub would otherwise turn ``container@account.dfs...`` in an
  ``abfs://`` path into a mail link);
* ``|`` is written ``\|``, which the table parser reads as a literal pipe even inside a
  code span, and line breaks become ``<br>`` because a table row is one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_CELL_CHARS = 300
# GitHub does not upload a step summary over 1 MiB. 60,000 characters take at most 240,000
# bytes in UTF-8, which leaves room for the table and for other steps' summaries.
MAX_DETAILS_CHARS = 60_000

# \ ` * _ [ ] < > & | ~ ! # start emphasis, code, links, images, HTML, entities,
# strikethrough or headings, or end a table cell.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~!#])")
_BACKTICK_RUN = re.compile(r"`+")
_ESCAPED_PIPE = "\\|"


def escape_inline(text: str, max_chars: int = MAX_CELL_CHARS) -> str:
    """Escape text for a heading or a table cell, cutting it to ``max_chars`` characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > max_chars:
        text = f"{text[:max_chars]}... ({len(text) - max_chars} more characters)"
    lines = [_INLINE_SPECIAL.sub(r"\\\1", line) for line in text.split("\n")]
    return "<br>".join(lines)


def code_cell(text: str, max_chars: int = MAX_CELL_CHARS) -> str:
    """Return a value as code spans for a table cell, one per line, cut to ``max_chars``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > max_chars:
        text = f"{text[:max_chars]}... ({len(text) - max_chars} more characters)"
    return "<br>".join(_code_span(line) for line in text.split("\n"))


def _code_span(line: str) -> str:
    if not line:
        return ""
    longest_run = max((len(run) for run in _BACKTICK_RUN.findall(line)), default=0)
    fence = "`" * (longest_run + 1)
    # The renderer strips one space from each end when both ends have one, so a
    # padded span shows a value that starts or ends with a backtick or space as is.
    if line.strip() and (line[0] in "` " or line[-1] in "` "):
        line = f" {line} "
    return f"{fence}{line.replace('|', _ESCAPED_PIPE)}{fence}"


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
    """Return the Markdown of one summary, ending with a blank line."""
    parts = [f"### {escape_inline(title).replace('<br>', ' ')}\n\n"]
    if rows:
        parts.append("| Field | Value |\n|---|---|\n")
        parts.extend(f"| {escape_inline(name)} | {code_cell(value)} |\n" for name, value in rows)
        parts.append("\n")
    if details:
        parts.append(f"#### {escape_inline(details_title)}\n\n")
        parts.append(fenced_block(details))
        parts.append("\n")
    return "".join(parts)
