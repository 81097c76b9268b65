"""A small progress bar for workflows (stderr; silent with `quiet`)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A dependency-free progress line on stderr: `label [####------] 4/10  2.1 s`.

    On a terminal the line is redrawn in place; otherwise a line is printed every 10%.
    `quiet=True` prints nothing. Use as a context manager or call `close()`.
    """

    def __init__(self, total: int, label: str, *, quiet: bool = False, stream=None):
        self.total, self.label, self.quiet = max(int(total), 1), label, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.start, self._printed = 0, time.perf_counter(), -1
        self.status = ""  # live figures after the bar (steps, t, max speed)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._draw()

    def _draw(self, final: bool = False) -> None:
        if self.quiet:
            return
        frac = self.done / self.total
        if not self._tty and not final and int(10 * frac) == self._printed:
            return
        self._printed = int(10 * frac)
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        line = f"{self.label} [{bar}] {self.done}/{self.total}  {self.elapsed:.1f} s"
        if self.status:
            line += f"  {self.status}"
        end = "\n" if (final or not self._tty) else ""
        self.stream.write(("\r" if self._tty else "") + line + end)
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, k: int = 1, status: str | None = None) -> None:
        """Advance by k; `status` replaces the live figures shown after the bar."""
        if status is not None:
            self.status = status
        self.done = min(self.done + k, self.total)
        if self.done < self.total:
            self._draw()

    def close(self) -> None:
        self.done = self.total
        self._draw(final=True)
        self.quiet = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
