"""One system: `integrate` (fixed steps, saved states), `integrate_until` (to
stationarity), `stepper` (a jax-md style pair for your own loops), and the checks every
entry point runs before compiling.

Every entry point validates its inputs, refuses a step that overflows the dtype, and
resolves kernel="auto" once, outside jit; the loops are `_steps.scan_saves` and
`_steps.run_until`. beta, dt and the masses are traced: changing them does not recompile.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._validation import check_int, check_positive_scalar, is_concrete
from ..kernels import max_exponent
from ._progress import meter, reports_for
from ._results import StopResult, Trajectory
from ._steps import make_step, run_until, scan_saves


def field_of(model, m):
    """The velocity field X -> (n, d) of `model` with masses m (no input checks)."""
    return lambda X: model.vector_field(0.0, X, m)


@eqx.filter_jit
def integrate_scan(model, X0, m, dt, steps: int, save_every: int, method: str, reports=None):
    dt = jnp.asarray(dt, X0.dtype)
    step = make_step(method)
    return scan_saves(step, field_of(model, m), X0, dt, steps, save_every, reports=reports)


def check_step_representable(model, dt, dtype) -> None:
    """Raise before compiling if one step of size dt overflows `dtype`: the retraction
    squares |x + dt v|, so dt e^{log max speed} must stay below sqrt(max float)."""
    log_speed = model.max_log_speed(dtype)
    if log_speed is None or not is_concrete(dt):
        return
    limit = 0.5 * max_exponent(dtype) - math.log(float(dt))
    if log_speed > limit:
        raise ValueError(
            f"`beta`={float(model.beta):.4g} with `dt`={float(dt):.3g} overflows "
            f"{jnp.dtype(dtype)} in one step (|dt * velocity| up to e^{{{log_speed:.1f}}} dt; "
            f"limit beta < {limit:.1f} for this dt and dtype). Use rescaled_time=True, "
            "shift_kernel=True, float64 or a smaller dt."
        )


def check_run(model, X0, m, dt, steps, save_every, method):
    X0, m = model.check_inputs(X0, m, name="X0")
    model.check_representable(X0.dtype)
    check_positive_scalar(dt, "dt")
    check_step_representable(model, dt, X0.dtype)
    steps = check_int(steps, "steps")
    save_every = steps if save_every is None else check_int(save_every, "save_every")
    if steps % save_every:
        raise ValueError(
            f"`steps`={steps} must be a multiple of `save_every`={save_every} "
            "(trajectories are never silently truncated)."
        )
    make_step(method)
    return X0, m, steps, save_every


def as_traced(x, dtype):
    """Python scalars are static under filter_jit; arrays are traced (no recompiles)."""
    return jnp.asarray(x, dtype=dtype)


def integrate(
    model,
    X0: Float[Array, "n d"],
    *,
    dt,
    steps: int,
    m=None,
    method: str = "euler",
    save_every: int | None = None,
    progress: bool = False,
) -> Trajectory:
    """Integrate dX/dt = model.velocity(X, m) from X0 for `steps` steps of size `dt`.

    **Arguments:**

    - `model`: a `MeanField`.
    - `X0`: (n, d) initial points on the sphere.
    - `dt`: step size (traced); `steps`: number of steps.
    - `m`: (n,) masses (default uniform 1/n).
    - `method`: "euler", "rk4" or "geodesic" (see `meanfield.integrate._steps`).
    - `save_every`: steps between saved states (must divide `steps`; None: save only the
      initial and final states).
    - `progress`: show a progress line on stderr (step, t, max speed, steps/s) while the
      compiled loop runs (see `meanfield.integrate._progress`).

    **Returns:** a `Trajectory` with steps // save_every + 1 saved states (t = 0 included);
    `.final` is the last. Compiles once per (shapes, dtype, steps, save_every, method,
    model structure): beta, sign, dt and m are traced.
    """
    X0, m, steps, save_every = check_run(model, X0, m, dt, steps, save_every, method)
    model = model.resolve_kernel(*X0.shape, dtype=X0.dtype)
    dt = as_traced(dt, X0.dtype)
    reports = reports_for(progress, steps)
    with meter(reports, "integrate") as bar:
        return bar.done(integrate_scan(model, X0, m, dt, steps, save_every, method, reports))


@eqx.filter_jit
def _integrate_while(model, X0, m, dt, max_steps, tol, method: str, check_every: int, reports=None):
    field = field_of(model, m)
    dt = jnp.asarray(dt, X0.dtype)
    tol = jnp.asarray(tol, X0.dtype)
    X, k, speed = run_until(
        make_step(method),
        field,
        X0,
        dt,
        max_steps=max_steps,
        check_every=check_every,
        measure=lambda X: jnp.max(jnp.linalg.norm(field(X), axis=-1)),
        done=lambda speed, _: speed <= tol,
        reports=reports,
    )
    return StopResult(X, k, k * dt, speed, speed <= tol)


def integrate_until(
    model,
    X0,
    *,
    dt,
    tol: float = 1e-4,
    max_steps: int = 100_000,
    m=None,
    method: str = "euler",
    check_every: int = 10,
    progress: bool = False,
) -> StopResult:
    """Integrate until max_i |dx_i/dt| <= tol (checked every `check_every` steps) or
    `max_steps` is reached (`lax.while_loop`: the step count is data-dependent).

    **Arguments:** as `integrate` (`progress` included), with `tol` (the speed threshold),
    `max_steps` and `check_every` instead of `steps` / `save_every`.

    **Returns:** a `StopResult` (`final`, `steps`, `t`, `max_speed`, `converged`).
    """
    X0, m, _, _ = check_run(model, X0, m, dt, 1, None, method)
    check_positive_scalar(tol, "tol")
    max_steps = check_int(max_steps, "max_steps")
    check_every = check_int(check_every, "check_every")
    dt, tol = as_traced(dt, X0.dtype), as_traced(tol, X0.dtype)
    model = model.resolve_kernel(*X0.shape, dtype=X0.dtype)
    reports = reports_for(progress, max_steps, check_every)
    with meter(reports, "integrate_until") as bar:
        res = _integrate_while(model, X0, m, dt, max_steps, tol, method, check_every, reports)
        if reports is None:
            return res
        return bar.done(res, steps=int(res.steps), t=float(res.t), speed=float(res.max_speed))


def stepper(model, *, dt, method: str = "euler", m=None):
    """jax-md style pair `(init_fn, step_fn)` for writing your own loops.

    **Arguments:** `model`, `dt` (step size), `method` ("euler" | "rk4" | "geodesic"),
    `m` (n,) masses (default uniform).

    **Returns:** `(init_fn, step_fn)`: `init_fn(X0)` validates the initial state and returns
    it as an array; `step_fn(X)` advances one step of size dt (pure, jit-able, no checks).
    """
    check_positive_scalar(dt, "dt")
    step = make_step(method)

    def init_fn(X0):
        X0, masses = model.check_inputs(X0, m, name="X0")
        model.check_representable(X0.dtype)
        return X0

    def step_fn(X):
        resolved = model.resolve_kernel(*X.shape, dtype=X.dtype)
        masses = m if m is not None else jnp.full((X.shape[0],), 1.0 / X.shape[0], X.dtype)
        return step(field_of(resolved, masses), X, jnp.asarray(dt, X.dtype))

    return init_fn, step_fn


def with_beta(model, beta):
    """A copy of `model` with another (possibly traced) inverse temperature `beta`."""
    return eqx.tree_at(lambda mdl: mdl.beta, model, jnp.asarray(beta, model.beta.dtype))
