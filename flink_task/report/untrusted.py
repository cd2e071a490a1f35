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

Nor can a list of such characters be trusted to be complete: ICU also skips the
Arabic tatweel (U+0640), a letter. So commands are looked for in a skeleton of each
line that keeps only what could take part in one: printable ASCII, and any other
character whose NFKC form is printable ASCII (the fullwidth number sign U+FF03 counts
as ``#``). Every other character is left out of the skeleton, as if the runner
skipped it. That finds more than the runners would, and a false match only costs a
changed character.

The neutralised text therefore:

1. has every line break that ``str.splitlines`` recognises (``\\r``, ``\\v``, ``\\f``,
   ``\\x1c`` to ``\\x1e``, ``\\x85``, ``\\u2028``, ``\\u2029`` as well as ``\\n``)
   replaced by ``\\n``, so the lines checked here are the lines either runner sees;
2. shows every invisible character (control, format, private use, surrogate,
   unassigned and the other Unicode default-ignorable code points, except tab) as a
   visible escape such as ``\\u200b``, so a reader can see that it is there;
3. has each ``#`` that forms ``##[`` or ``##vso[`` (any letter case) in the skeleton
   replaced by ``*``, so ``##vso[`` becomes ``**vso[`` (the Azure DevOps agent's process
   invoker rewrites ``##vso`` the same way when worker commands are disabled);
4. has a space inserted after the first colon of a line whose skeleton starts with
   ``::`` after whitespace. When that colon is a look-alike (the fullwidth colon
   U+FF1A), the character is shown as a ``\\uXXXX`` escape instead.

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
    characters = [_escape_invisible(character) for character in line]
    # Each pass turns a matched character into one that cannot take part in a command,
    # so the loop ends, normally after the first pass.
    while _neutralise_once(characters):
        pass
    return "".join(characters)


def _neutralise_once(characters: list[str]) -> bool:
    """Break the commands found in the skeleton of ``characters``; return whether any was."""
    positions, skeleton = _skeleton(characters)
    changed = False
    for match in _COMMAND_HASHES.finditer(skeleton):
        for index in (match.start(), match.start() + 1):
            characters[positions[index]] = "*"
        changed = True

    content_start = len(skeleton) - len(skeleton.lstrip())
    if skeleton.startswith("::", content_start):
        position = positions[content_start]
        if characters[position] == ":":
            characters[position] = ": "
        else:
            characters[position] = _visible_escape(characters[position])
        changed = True
    return changed


def _skeleton(characters: list[str]) -> tuple[list[int], str]:
    """Return the skeleton of a line and, for each of its characters, the source index."""
    positions: list[int] = []
    parts: list[str] = []
    for index, character in enumerate(characters):
        ascii_form = _ascii_form(character)
        positions.extend([index] * len(ascii_form))
        parts.append(ascii_form)
    return positions, "".join(parts)


def _ascii_form(text: str) -> str:
    if text.isascii():
        return text if text.isprintable() or text == "\t" else ""
    normalised = unicodedata.normalize("NFKC", text)
    if normalised.isascii() and normalised.isprintable():
        return normalised
    return ""


def _escape_invisible(character: str) -> str:
    if character == "\t" or not _is_invisible(character):
        return character
    return _visible_escape(character)


def _visible_escape(character: str) -> str:
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
