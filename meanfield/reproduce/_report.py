"""The side-by-side report of a reproduction: ours, theirs, the difference.

A reproduction returns a `Result`: comparison rows (quantity, ours, theirs), free-form
notes, arrays and figures. `write_result` saves it as a run folder with the public
`mf.save_run` (config.json, arrays.npz, results.json with the rows and the Markdown
report, the figures; atomic), then writes report.md next to them (the same text as
results["report"]).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

import meanfield as mf


@dataclasses.dataclass
class Row:
    """One compared quantity: `ours` and `theirs` are numbers, strings or None (no
    reference: the paper states no number, or the entry has no peer code). `tol` is the
    agreement claimed (|ours - theirs| <= tol), None for no claim."""

    section: str
    quantity: str
    ours: object
    theirs: object = None
    tol: float | None = None

    @property
    def difference(self):
        if _number(self.ours) and _number(self.theirs):
            return float(self.ours) - float(self.theirs)
        return None

    @property
    def agrees(self):
        diff = self.difference
        if diff is None or self.tol is None:
            return None
        return bool(abs(diff) <= self.tol)

    def as_dict(self) -> dict:
        return dict(
            section=self.section,
            quantity=self.quantity,
            ours=_plain(self.ours),
            theirs=_plain(self.theirs),
            difference=self.difference,
            tol=self.tol,
            agrees=self.agrees,
        )


@dataclasses.dataclass
class Result:
    """What an entry computed: rows, notes (Markdown paragraphs), a summary dict of
    headline numbers, arrays (name -> array) and figures (file name -> Figure)."""

    rows: list[Row]
    summary: dict
    notes: list[str] = dataclasses.field(default_factory=list)
    arrays: dict = dataclasses.field(default_factory=dict)
    figures: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def agreed(self) -> bool:
        """Every row that claims a tolerance is within it."""
        return all(r.agrees is not False for r in self.rows)


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are only saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _plain(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if _number(x):
        x = float(x)
        if math.isnan(x):
            return "nan"
        if x == int(x) and abs(x) < 1e9:
            return str(int(x))
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3e}"
        return f"{x:.6g}"
    return str(x)


def markdown(entry, result: Result, seconds: float, quick: bool) -> str:
    """The report: title, citation, source, setup, the side-by-side table, notes."""
    lines = [
        f"# {entry.title}" + (" (--quick)" if quick else ""),
        "",
        f"- Reproduces: {entry.citation}",
        f"- Reference code: {entry.source}",
        f"- Command: `meanfield reproduce {entry.name}{' --quick' if quick else ''}`"
        f" ({seconds:.1f} s)",
        f"- Verdict: {'all claimed agreements hold' if result.agreed else 'DISAGREES'}",
        "",
        entry.setup,
        "",
    ]
    sections: dict[str, list[Row]] = {}
    for r in result.rows:
        sections.setdefault(r.section, []).append(r)
    for name, rows in sections.items():
        lines += [f"## {name}", "", "| quantity | ours | theirs | difference | agrees |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for r in rows:
            agrees = "-" if r.agrees is None else ("yes" if r.agrees else "**no**")
            if r.tol is not None and r.agrees is not None:
                agrees += " (exact)" if r.tol == 0 else f" (tol {r.tol:.0e})"
            lines.append(
                f"| {r.quantity} | {_fmt(r.ours)} | {_fmt(r.theirs)} | {_fmt(r.difference)} "
                f"| {agrees} |"
            )
        lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {t}" for t in result.notes] + [""]
    if result.figures:
        lines += [f"![{n}]({n})" for n in result.figures] + [""]
    return "\n".join(lines)


def write_result(entry, result: Result, out, *, seconds: float, quick: bool, overwrite: bool):
    """Save `result` into the run folder `out` (`mf.save_run`) with report.md.

    **Returns:** the saved `mf.runs.Run`.
    """
    text = markdown(entry, result, seconds, quick)
    results = dict(
        entry=entry.name,
        title=entry.title,
        citation=entry.citation,
        source=entry.source,
        quick=quick,
        seconds=seconds,
        agreed=result.agreed,
        summary=result.summary,
        comparison=[r.as_dict() for r in result.rows],
        notes=result.notes,
        report=text,
    )
    config = dict(entry=entry.name, quick=quick, **result.config)
    run = mf.save_run(
        out,
        arrays=result.arrays,
        results=results,
        config=config,
        figures=result.figures,
        command=f"reproduce {entry.name}",
        overwrite=overwrite,
    )
    (Path(run.path) / "report.md").write_text(text + "\n")
    return run
