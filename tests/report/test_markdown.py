from __future__ import annotations

import html
import re

import pytest

from flink_task.report.markdown import (
    MAX_CELL_CHARS,
    code_cell,
    fenced_block,
    render_summary,
)

cmarkgfm = pytest.importorskip("cmarkgfm")
from cmarkgfm.cmark import Options  # noqa: E402

CELL_VALUES = [
    "plain value",
    "a | b || c",
    "first\nsecond\r\nthird",
    "<script>alert(1)</script> <img src=x onerror=y>",
    "*bold* _em_ `code` ~~strike~~ [link](http://x) ![img](http://y)",
    "&amp; &lt; &#60; \\| \\",
    "# heading? | - list? > quote?",
    "abfs://c@a.dfs.core.windows.net/savepoints/savepoint-1a2b3c",
    "`starts with a backtick and ends with ``",
    " padded with spaces ",
    "back\\slash \\| escaped pipe",
    "line\n\nafter an empty line",
]


def render(markdown: str) -> str:
    # Raw HTML is let through, so only the escaping can keep it out of the page.
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def table_cells(page: str) -> list[str]:
    return re.findall(r"<td>(.*?)</td>", page, flags=re.DOTALL)


@pytest.mark.parametrize("value", CELL_VALUES)
def test_cell_renders_as_text(value):
    page = render(render_summary("t", [("name", value)], None))

    cells = table_cells(page)
    assert len(cells) == 2
    assert cells[0] == "name"
    lines = cells[1].split("<br>")
    shown = [html.unescape(re.sub(r"^<code>(.*)</code>$", r"\1", line)) for line in lines]
    assert shown == value.replace("\r\n", "\n").split("\n")
    assert "<script>" not in page
    assert "<img" not in page
    assert "<strong>" not in page
    assert "<a " not in page


def test_long_cell_cut():
    text = code_cell("x" * (MAX_CELL_CHARS + 50))

    assert text == "`" + "x" * MAX_CELL_CHARS + "... (50 more characters)`"


def test_field_name_escaped():
    page = render(render_summary("t", [("a|b <i>c</i>", "v")], None))

    assert table_cells(page)[0] == "a|b &lt;i&gt;c&lt;/i&gt;"


def test_title_single_line():
    page = render(render_summary("flink-task <b>NEW</b>\norders", [], None))

    assert page.startswith("<h3>flink-task &lt;b&gt;NEW&lt;/b&gt; orders</h3>")


@pytest.mark.parametrize(
    "details",
    [
        "Job output\nwith lines",
        "has ``` a fence inside\n```\nand after",
        "````` five backticks\n`````",
        "~~~\ntilde fence\n~~~",
        "<script>x</script> | *not bold*",
    ],
)
def test_details_fenced_verbatim(details):
    page = render(render_summary("t", [("a", "b")], details))

    blocks = re.findall(r"<pre[^>]*><code[^>]*>(.*?)</code></pre>", page, flags=re.DOTALL)
    assert len(blocks) == 1
    assert html.unescape(blocks[0]) == details + "\n"


def test_fence_longer_than_backtick_runs():
    block = fenced_block("a ```` b")

    assert block.startswith("`````text\n")
    assert block.endswith("\n`````\n")


def test_details_cut_with_note():
    block = fenced_block("y" * 20, max_chars=10)

    assert block == "```text\n" + "y" * 10 + "\n... (10 more characters)\n```\n"


def test_summary_without_rows_or_details():
    assert render_summary("only title", [], None) == "### only title\n\n"
