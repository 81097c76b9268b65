"""A progress meter for long integrations: `progress=True` on `integrate`,
`integrate_until` and `ensemble`.

The compiled loop calls back to the host (`jax.debug.callback`) every `Reports.every`
steps with (steps done, t, max speed), where the max speed is max_i |x_i(k) - x_i(k-1)| / dt
over the last step (every system of an ensemble), the chord speed: the velocity to O(dt),
at no extra field evaluation. The host side draws one line on stderr,
`integrate  step 1200/200000 (0.6%)  t = 24  max speed 3.1e-04  5.1e+03 steps/s`, redrawn in
place on a terminal or a notebook and printed every 10% elsewhere (logs, CI).

The loop carries only the static `Reports` (how often, how many steps in all): a second
run with the same settings reuses the compilation, and `progress=False` compiles no
callback at all.
"""

from __future__ import annotations

import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

#: At most this many reports per run (each is a host round trip).
MAX_REPORTS = 500


class Reports(NamedTuple):
    """Static settings of the in-loop reports: every `every` steps of `total`."""

    every: int
    total: int


def reports_for(progress: bool, total: int, granularity: int = 1) -> Reports | None:
    """The report settings of a run of `total` steps checked every `granularity` steps
    (None without progress): about MAX_REPORTS reports, on multiples of `granularity`."""
    if not progress:
        return None
    blocks = max(1, total // max(granularity, 1))
    return Reports(granularity * max(1, -(-blocks // MAX_REPORTS)), int(total))


class StepMeter:
    """The host-side line: steps done (of `total`), t, max speed and the step rate."""

    def __init__(self, total: int, label: str, *, stream=None, min_interval: float = 0.1):
        self.total, self.label = max(int(total), 1), label
        self.stream = stream if stream is not None else sys.stderr
        self.start, self.first = time.perf_counter(), None  # (time, step) of the first report
        self.step, self.t, self.speed = 0, 0.0, float("nan")
        self._tty = _live(self.stream)
        self._last_draw, self._last_decile, self.min_interval = 0.0, -1, min_interval
        self.closed = False

    def update(self, step: int, t: float, speed: float) -> None:
        if self.closed or step < self.step:  # callbacks may arrive out of order
            return
        self.step, self.t, self.speed = int(step), float(t), float(speed)
        now = time.perf_counter()
        if self.first is None:  # compilation ends here: rates count from this report
            self.first = (now, self.step)
        decile = int(10 * self.step / self.total)
        if self._tty and now - self._last_draw < self.min_interval:
            return
        if not self._tty and decile == self._last_decile:
            return
        self._last_draw, self._last_decile = now, decile
        self._draw()

    def line(self) -> str:
        t0, k0 = self.first if self.first is not None else (self.start, 0)
        elapsed = time.perf_counter() - t0
        rate = (self.step - k0) / elapsed if elapsed > 0 and self.step > k0 else float("nan")
        return (
            f"{self.label}  step {self.step}/{self.total} ({100 * self.step / self.total:.1f}%)"
            f"  t = {self.t:.4g}  max speed {self.speed:.2e}"
            + (f"  {rate:.3g} steps/s" if rate == rate else "")
        )

    def _draw(self, final: bool = False) -> None:
        self._drawn = self.step
        end = "\n" if (final or not self._tty) else ""
        self.stream.write(("\r" if self._tty else "") + self.line() + end)
        self.stream.flush()

    def close(self, *, steps=None, t=None, speed=None) -> None:
        """The last line (a stopped run passes its own steps, t and max speed)."""
        if self.closed:
            return
        for name, value in (("step", steps), ("t", t), ("speed", speed)):
            if value is not None:
                setattr(self, name, type(getattr(self, name))(value))
        if self._tty or getattr(self, "_drawn", None) != self.step or steps is not None:
            self._draw(final=True)
        self.closed = True


def _live(stream) -> bool:
    """A terminal, or a notebook's stream (both redraw a line after "\\r")."""
    if hasattr(stream, "isatty") and stream.isatty():
        return True
    return "ipykernel" in type(stream).__module__


_ACTIVE: list[StepMeter] = []


def _to_host(step, t, speed) -> None:
    if _ACTIVE:
        _ACTIVE[-1].update(int(step), float(t), float(speed))


def report(reports: Reports | None, k, dt, X_before, X_after, axis: int = -1) -> None:
    """In the loop: after step k (1-based), send (k, k dt, chord speed) to the host when k
    is a multiple of `reports.every` (nothing at all when `reports` is None)."""
    if reports is None:
        return

    def send(k, X_before, X_after):
        speed = jnp.max(jnp.linalg.norm(X_after - X_before, axis=axis)) / dt
        jax.debug.callback(_to_host, k, k * dt, speed)

    lax.cond(k % reports.every == 0, send, lambda *_: None, k, X_before, X_after)


class meter:
    """Context manager around one compiled run: shows a `StepMeter` while the callbacks
    arrive (none when `reports` is None) and closes it once the result is ready."""

    def __init__(self, reports: Reports | None, label: str):
        self.reports, self.label, self.bar = reports, label, None

    def __enter__(self):
        if self.reports is not None:
            self.bar = StepMeter(self.reports.total, self.label)
            _ACTIVE.append(self.bar)
        return self

    def done(self, result, **last):
        """Wait for `result` (so every callback has arrived) and close the line (`last`:
        the steps, t and speed of a run that stopped early)."""
        if self.bar is not None:
            result = jax.block_until_ready(result)
            jax.effects_barrier()
            self.bar.close(**last)
        return result

    def __exit__(self, *exc):
        if self.bar is not None:
            if _ACTIVE and _ACTIVE[-1] is self.bar:
                _ACTIVE.pop()
            self.bar.closed = True
