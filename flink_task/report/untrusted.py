"""Neutralise pipeline commands in text that came from a server.

Flink exceptions, ARM error messages and ``jobOutput`` are printed to the log, and both
runners read every line a step prints looking for commands. The rules this module
defends against, from the runners' sources:

* GitHub runner (``actions/runner``, ``ActionCommand.TryParseV2``): a line whose
  content, after leading whitespace is trimmed, starts with ``::`` and has a second
  ``::`` is a command (``::add-mask::x``, ``::error::x``).
* GitHub runner (``ActionCommand.TryParse``, tried when the first form fails):
  ``##[name ...]data`` anywhere in a line.
* Azure DevOps agent (``Command.TryParse``): ``##vso[area.event ...]data`` anywhere in
  a line. The web log viewer also formats lines with ``##[group]``, ``##[error]``,
  ``##[warning]`` and similar prefixes.

Both runners split their input on ``\\n``, ``\\r`` and ``\\r\\n`` (.NET
``StreamReader.ReadLine``). Some of their checks use culture-sensitive .NET string
methods (``StartsWith(string)``, ``IndexOf(string)``). Since .NET 5 such a comparison
uses ICU, which can skip characters that have no collation weight, such as zero-width
spaces and many format and control characters. So an invisible character between the
two colons of ``::`` or the two hashes of ``##vso[`` must not be trusted to break the
command.

The neutralised text therefore:

1. has every line break that ``str.splitlines`` recognises (``\\r``, ``\\v``, ``\\f``,
   ``\\x1c`` to ``\\x1e``, ``\\x85``, ``\\u2028``, ``\\u2029`` as well as ``\\n``)
   replaced by ``\\n``, so the lines checked here are the lines either runner sees;
2. shows every invisible character (control, format, private use, surrogate,
   unassigned and the other Unicode default-ignorable code points, except tab) as a
   visible escape such as ``\\u200b``;
3. has ``##`` replaced by ``**`` wherever it is followed by ``[`` or by ``vso[`` in any
   letter case, so neither ``##[`` nor ``##vso[`` occurs anywhere (the Azure DevOps
   agent's process invoker rewrites ``##vso`` to ``**vso`` the same way when worker
   commands are disabled);
4. has a space inserted between the colons of a line that starts with ``::`` after
   whitespace, so no line starts with ``::``.

Escaping was chosen over GitHub's ``::stop-commands::<token>`` pause because it works
on both platforms (Azure DevOps documents no pause command), needs no state in the
runner, and keeps the text safe wherever it is embedded later (a log record, an error).
Applying the function twice gives the same text as applying it once.
"""

from __future__ import annotations

import re
import unicodedata

# Default_Ignorable_Code_Point members (Unicode DerivedCoreProperties.txt) that are
# not already covered by the general categories in _INVISIBLE_CATEGORIES.
_DEFAULT_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})

_COMMAND_HASHES = re.compile(r"##(?=(?:vso)?\[)", re.IGNORECASE)


def neutralise_commands(text: str) -> str:
    """Return ``text`` changed so that no line of it can act as a pipeline command."""
    lines = text.splitlines() or [""]
    return "\n".join(_neutralise_line(line) for line in lines)


def _neutralise_line(line: str) -> str:
    line = "".join(_escape_invisible(character) for character in line)
    line = _COMMAND_HASHES.sub("**", line)
    content = line.lstrip()
    if content.startswith("::"):
        indent = line[: len(line) - len(content)]
        line = indent + ": :" + content[2:]
    return line


def _escape_invisible(character: str) -> str:
    if character == "\t" or not _is_invisible(character):
        return character
    code_point = ord(character)
    if code_point <= 0xFF:
        return f"\\x{code_point:02x}"
    if code_point <= 0xFFFF:
        return f"\\u{code_point:04x}"
    return f"\\U{code_point:08x}"


def _is_invisible(character: str) -> bool:
    if unicodedata.category(character) in _INVISIBLE_CATEGORIES:
        return True
    code_point = ord(character)
    return any(low <= code_point <= high for low, high in _DEFAULT_IGNORABLE_RANGES)
