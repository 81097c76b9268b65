"""What an integration returns: saved states (`Trajectory`) or a stopped state
(`StopResult`). Both name the last state `.final`; their reprs show values."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Trajectory(eqx.Module):
    """Saved states of a run: `ts` (saves,) times and `xs` (..., saves, n, d) states.

    `xs[..., 0, :, :]` is the initial condition and `.final` the last saved state (leading
    axes are ensemble axes: betas, seeds).
    """

    ts: Float[Array, " saves"]
    xs: Float[Array, "*batch saves n d"]

    @property
    def final(self) -> Float[Array, "*batch n d"]:
        """The last saved state, `xs[..., -1, :, :]`."""
        return self.xs[..., -1, :, :]

    def __repr__(self) -> str:
        if not (_concrete(self.ts) and _concrete(self.xs)):
            return f"Trajectory(ts={self.ts!r}, xs={self.xs!r})"
        *batch, saves, n, d = self.xs.shape
        ts = np.asarray(self.ts)
        span = f"t={float(ts[0]):.4g}..{float(ts[-1]):.4g}" if ts.size else "t=()"
        batch_s = f"batch={tuple(batch)}, " if batch else ""
        return f"Trajectory({batch_s}saves={saves}, n={n}, d={d}, {span}, dtype={self.xs.dtype})"


class StopResult(eqx.Module):
    """Result of `integrate_until`: the `final` state (n, d), the `steps` taken, the final
    time `t`, the `max_speed` max_i |dx_i/dt| there and whether it `converged` (speed <= tol)."""

    final: Float[Array, "n d"]
    steps: Int[Array, ""]
    t: Float[Array, ""]
    max_speed: Float[Array, ""]
    converged: Array

    def __repr__(self) -> str:
        leaves = (self.final, self.steps, self.t, self.max_speed, self.converged)
        if not all(_concrete(x) for x in leaves) or np.ndim(self.steps):
            return (
                f"StopResult(final={self.final!r}, steps={self.steps!r}, t={self.t!r}, "
                f"max_speed={self.max_speed!r}, converged={self.converged!r})"
            )
        n, d = self.final.shape[-2:]
        return (
            f"StopResult(steps={int(self.steps)}, t={float(self.t):.6g}, "
            f"converged={bool(self.converged)}, max_speed={float(self.max_speed):.3g}, "
            f"n={n}, d={d})"
        )
