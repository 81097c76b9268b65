"""Griffe extension for the API pages: keep plain-text blocks of docstrings as blocks.

The docstrings are Markdown (`**Arguments:**` bullets), rendered with
`docstring_style: null`. A few use two plain-text forms that Markdown would run together
into one paragraph; this extension (docs only, the library is untouched) turns them into
preformatted blocks, line structure kept:

- a section header on its own line (`Fields:`, `**Arguments:**`, `Attributes:`, ...) followed
  by an indented block;
- a reStructuredText simple table (`====  ====` rules).
"""

from __future__ import annotations

import re
import textwrap

import griffe

_HEADER = re.compile(r"^(?:\*\*)?([A-Z][A-Za-z ]{2,30}):(?:\*\*)?\s*$")
_RULE = re.compile(r"^=+(\s+=+)+\s*$")


def plain_blocks(text: str) -> str:
    """The docstring text with header + indented blocks and RST tables made code blocks."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _HEADER.match(line) and nxt.startswith((" ", "\t")) and nxt.strip():
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            block = lines[i + 1 : j]
            while block and not block[-1].strip():
                block.pop()
            block = textwrap.dedent("\n".join(block)).splitlines()
            out += [f"**{_HEADER.match(line).group(1)}:**", "", *("    " + b for b in block), ""]
            i = j
            continue
        if _RULE.match(line):
            j = i + 1
            while j < len(lines) and not _RULE.match(lines[j]):
                j += 1
            table = lines[i : j + 1]
            out += ["", *("    " + t for t in table), ""]
            i = j + 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class PlainBlocks(griffe.Extension):
    """Apply `plain_blocks` to every docstring griffe loads."""

    def on_instance(self, *, node=None, obj=None, **kwargs) -> None:
        if obj is not None and obj.docstring is not None:
            obj.docstring.value = plain_blocks(obj.docstring.value)
