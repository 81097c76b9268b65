"""One step of each method, and the two loops every integrator runs.

Methods (one step of size dt from X, velocity field f):
- "euler":    X <- retract(X + dt f(X))                         (order 1)
- "rk4":      classical RK4 on the ambient ODE dx/dt = P_x F(x), then retract (order 4).
              The ambient field keeps |x| = 1 invariant, so the projection error is
              O(dt^5) per step and the order is preserved.
- "geodesic": X <- exp_X(dt f(X))                               (order 1)

`scan_saves` runs a fixed number of steps (an outer `lax.scan` over saves, an inner one
over `save_every` steps); `run_until` runs blocks of `check_every` steps inside a
`lax.while_loop` until a stopping rule holds. The single-system, ensemble, sharded and
study runs all go through these two (vmap / shard_map around them).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from ..sphere import exp_map, retract
from ._progress import report
from ._results import Trajectory

METHODS = ("euler", "rk4", "geodesic")
BLOWUP = (
    "The integration produced NaN or inf (or left the sphere): exp(beta) overflowed or dt is "
    "far too large. Use rescaled_time=True for large beta, float64, or a smaller dt."
)


def make_step(method: str, axis: int = -1) -> Callable:
    """The one-step map of an integration method.

    **Arguments:** `method`: "euler", "rk4" or "geodesic" (see the module docstring);
    `axis`: the coordinate axis of the states (0 for the lanes layout (d, n, systems)).

    **Returns:** `step(field, X, dt) -> X_next`, with `field` X (n, d) -> velocity (n, d).
    """
    if method == "euler":
        return lambda f, X, dt: retract(X + dt * f(X), axis)
    if method == "geodesic":
        return lambda f, X, dt: exp_map(X, dt * f(X), axis)
    if method == "rk4":

        def rk4(f, X, dt):
            k1 = f(X)
            k2 = f(X + 0.5 * dt * k1)
            k3 = f(X + 0.5 * dt * k2)
            k4 = f(X + dt * k3)
            return retract(X + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4), axis)

        return rk4
    raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")


def blew_up(xs, axis: int = -1):
    """NaN / inf anywhere, or a row off the sphere (an overflowed |x + dt v| retracts to 0)."""
    norms = jnp.linalg.norm(xs, axis=axis)
    return ~jnp.all(jnp.isfinite(xs)) | jnp.any(jnp.abs(norms - 1) > 0.5)


def advance(step, field, X, dt, length: int, *, k=0, reports=None, axis: int = -1):
    """`length` steps from X (one `lax.scan`); `k`: steps done before (for the progress
    reports, see `_progress.report`; none when `reports` is None)."""
    if reports is None:
        X, _ = lax.scan(lambda Y, _: (step(field, Y, dt), None), X, None, length=length)
        return X

    def body(Y, j):
        Z = step(field, Y, dt)
        report(reports, j, dt, Y, Z, axis)
        return Z, None

    X, _ = lax.scan(body, X, k + 1 + jnp.arange(length))
    return X


def scan_saves(
    step,
    field,
    X0,
    dt,
    steps: int,
    save_every: int,
    *,
    check: bool = True,
    reports=None,
    axis: int = -1,
):
    """`steps` steps from X0, saving every `save_every`.

    **Arguments:** `step` (from `make_step`), `field` X -> (n, d), `X0` (n, d) (or any
    batch (..., n, d) with a field over it), `dt`, `steps`, `save_every` (divides steps;
    static), `check`: raise through `eqx.error_if` if the run blew up (NaN, inf, or rows
    off the sphere); `reports`: progress reports (`_progress.Reports`, static) or None;
    `axis`: the coordinate axis of the states (as in `make_step`).

    **Returns:** a `Trajectory` with steps // save_every + 1 states (X0 first).
    """

    def outer(X, i):
        X = advance(step, field, X, dt, save_every, k=i * save_every, reports=reports, axis=axis)
        return X, X

    _, xs = lax.scan(outer, X0, jnp.arange(steps // save_every))
    xs = jnp.concatenate([X0[None], xs], axis=0)
    if check:
        xs = eqx.error_if(xs, blew_up(xs, -1 if axis == -1 else axis + 1), BLOWUP)
    ts = dt * save_every * jnp.arange(xs.shape[0], dtype=X0.dtype)
    return Trajectory(ts, xs)


def run_until(
    step, field, X0, dt, *, max_steps, check_every: int, measure, done, prev=None, reports=None
):
    """Blocks of `check_every` steps until `done(measure(X), previous measure)` or
    `max_steps`.

    **Arguments:**

    - `step`, `field`, `X0`, `dt`: the step map, the velocity field X -> (n, d), the start.
    - `max_steps`: a cap on the steps (traced or static).
    - `check_every`: steps between two checks (static).
    - `measure`: X -> a pytree of scalars (e.g. the max speed, an atom count).
    - `done`: (measure, previous measure) -> bool scalar, the stopping rule.
    - `prev`: the "previous measure" before the first block (default measure(X0), so a
      start that already satisfies the rule takes no step).
    - `reports`: progress reports (`_progress.Reports`, static; multiples of check_every)
      or None.

    **Returns:** (X, steps taken, measure at X).
    """
    aux0 = measure(X0)
    prev = aux0 if prev is None else prev

    def cond(state):
        _, k, aux, before = state
        return jnp.logical_not(done(aux, before)) & (k < max_steps)

    def body(state):
        X, k, aux, _ = state
        X = advance(step, field, X, dt, check_every, k=k, reports=reports)
        return X, k + check_every, measure(X), aux

    X, k, aux, _ = lax.while_loop(cond, body, (X0, jnp.asarray(0), aux0, prev))
    return eqx.error_if(X, blew_up(X), BLOWUP), k, aux
