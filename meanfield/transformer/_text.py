"""Default long text for the diagnostics: English prose from standard-library docstrings.

No download is needed, and the text is comfortably longer than any context used here.
"""

from __future__ import annotations

import importlib
import inspect

STDLIB_MODULES = ("argparse", "csv", "collections", "json", "difflib", "string", "typing")
"""Standard-library modules whose docstrings make up the default text."""


def _prose(doc: str) -> str:
    """Keep the prose of a docstring: drop doctest and indented (code) lines, join lines."""
    paragraphs, current = [], []
    for line in doc.splitlines():
        code = line.startswith((" ", "\t", ">>>", "...")) or line.strip().startswith(">>>")
        if not line.strip() or code:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(p for p in paragraphs if len(p.split()) >= 4)


def stdlib_text(modules: tuple[str, ...] = STDLIB_MODULES) -> str:
    """English prose from the docstrings of standard-library modules (no download needed).

    The docstrings of `modules` (module docstring, then those of its public classes and
    functions, in alphabetical order) with doctests and indented code removed, joined by
    blank lines. Comfortably longer than 512 word pieces.
    """
    parts = []
    for name in modules:
        mod = importlib.import_module(name)
        docs = [inspect.getdoc(mod) or ""]
        for attr in sorted(getattr(mod, "__all__", [])):
            obj = getattr(mod, attr, None)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                docs.append(inspect.getdoc(obj) or "")
        parts.extend(p for p in (_prose(d) for d in docs) if p)
    return "\n\n".join(parts)
