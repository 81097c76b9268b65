"""Time integration of the attention dynamics on the sphere.

Methods (one step of size dt from X, velocity f):
- "euler":    X <- retract(X + dt f(X))                         (order 1)
- "rk4":      classical RK4 on the ambient ODE dx/dt = P_x F(x), then retract (order 4).
              The ambient field keeps |x| = 1 invariant, so the projection error is
              O(dt^5) per step and the order is preserved.
- "geodesic": X <- exp_X(dt f(X))                               (order 1)

Fixed step counts use `lax.scan` (an outer scan over saves, an inner one over
`save_every` steps); `integrate_until` stops at stationarity with `lax.while_loop`.
beta, dt and the masses are traced: changing them does not recompile.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._validation import check_int, check_positive_scalar, is_concrete
from ..kernels import max_exponent
from ..sphere import exp_map, retract, uniform_sphere

METHODS = ("euler", "rk4", "geodesic")
_BLOWUP = (
    "The integration produced NaN or inf (or left the sphere): exp(beta) overflowed or dt is "
    "far too large. "
    "Use rescaled_time=True for large beta, float64, or a smaller dt."
)


def _blew_up(xs):
    """NaN / inf anywhere, or a row off the sphere (an overflowed |x + dt v| retracts to 0)."""
    norms = jnp.linalg.norm(xs, axis=-1)
    return ~jnp.all(jnp.isfinite(xs)) | jnp.any(jnp.abs(norms - 1) > 0.5)


class Trajectory(eqx.Module):
    """Saved states of a run: `ts` (saves,) times, `xs` (saves, n, d) states.

    `xs[0]` is the initial condition and `xs[-1]` the final state.
    """

    ts: Float[Array, " saves"]
    xs: Float[Array, "saves n d"]

    @property
    def final(self) -> Float[Array, "n d"]:
        return self.xs[..., -1, :, :]


class StopResult(eqx.Module):
    """Result of `integrate_until`: final state, steps taken, final time and max speed."""

    x: Float[Array, "n d"]
    steps: Int[Array, ""]
    t: Float[Array, ""]
    max_speed: Float[Array, ""]
    converged: Array


def make_step(method: str) -> Callable:
    """The one-step map (field, X, dt) -> X_next of an integration method."""
    if method == "euler":
        return lambda f, X, dt: retract(X + dt * f(X))
    if method == "geodesic":
        return lambda f, X, dt: exp_map(X, dt * f(X))
    if method == "rk4":

        def rk4(f, X, dt):
            k1 = f(X)
            k2 = f(X + 0.5 * dt * k1)
            k3 = f(X + 0.5 * dt * k2)
            k4 = f(X + dt * k3)
            return retract(X + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4))

        return rk4
    raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")


@eqx.filter_jit
def _integrate_scan(model, X0, m, dt, steps: int, save_every: int, method: str):
    step = make_step(method)
    field = lambda X: model._velocity(X, m)
    dt = jnp.asarray(dt, X0.dtype)

    def inner(X, _):
        return step(field, X, dt), None

    def outer(X, _):
        X, _ = lax.scan(inner, X, None, length=save_every)
        return X, X

    _, xs = lax.scan(outer, X0, None, length=steps // save_every)
    xs = jnp.concatenate([X0[None], xs], axis=0)
    xs = eqx.error_if(xs, _blew_up(xs), _BLOWUP)
    ts = dt * save_every * jnp.arange(xs.shape[0], dtype=X0.dtype)
    return Trajectory(ts, xs)


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


def _check_run(model, X0, m, dt, steps, save_every, method):
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


def _as_traced(x, dtype):
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
) -> Trajectory:
    """Integrate dX/dt = model velocity from X0 for `steps` steps of size `dt`.

    Returns a `Trajectory` with steps // save_every + 1 saved states (t = 0 included);
    save_every=None saves only the initial and final states. Compiles once per
    (shapes, dtype, steps, save_every, method, model structure): beta, sign, dt and m
    are traced.
    """
    X0, m, steps, save_every = _check_run(model, X0, m, dt, steps, save_every, method)
    model = model.resolve_kernel(*X0.shape, dtype=X0.dtype)
    return _integrate_scan(model, X0, m, _as_traced(dt, X0.dtype), steps, save_every, method)


@eqx.filter_jit
def _integrate_while(model, X0, m, dt, max_steps, tol, method: str, check_every: int):
    step = make_step(method)
    field = lambda X: model._velocity(X, m)
    dt = jnp.asarray(dt, X0.dtype)
    tol = jnp.asarray(tol, X0.dtype)

    def max_speed(X):
        return jnp.max(jnp.linalg.norm(model._velocity(X, m), axis=-1))

    def cond(state):
        _, k, speed = state
        return (speed > tol) & (k < max_steps)

    def body(state):
        X, k, _ = state
        X, _ = lax.scan(lambda Y, _: (step(field, Y, dt), None), X, None, length=check_every)
        return X, k + check_every, max_speed(X)

    X, k, speed = lax.while_loop(cond, body, (X0, jnp.asarray(0), max_speed(X0)))
    X = eqx.error_if(X, _blew_up(X), _BLOWUP)
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
) -> StopResult:
    """Integrate until max_i |dx_i/dt| <= tol (checked every `check_every` steps) or
    `max_steps` is reached; `lax.while_loop`, so the step count is data-dependent.
    """
    X0, m, _, _ = _check_run(model, X0, m, dt, 1, None, method)
    check_positive_scalar(tol, "tol")
    max_steps = check_int(max_steps, "max_steps")
    check_every = check_int(check_every, "check_every")
    dt, tol = _as_traced(dt, X0.dtype), _as_traced(tol, X0.dtype)
    model = model.resolve_kernel(*X0.shape, dtype=X0.dtype)
    return _integrate_while(model, X0, m, dt, max_steps, tol, method, check_every)


def stepper(model, *, dt, method: str = "euler", m=None):
    """jax-md style pair `(init_fn, step_fn)` for writing your own loops.

    `init_fn(X0)` validates the initial state and returns it as an array; `step_fn(X)`
    advances one step of size dt (pure, jit-able, no input checks).
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
        return step(lambda Y: resolved._velocity(Y, masses), X, jnp.asarray(dt, X.dtype))

    return init_fn, step_fn


def with_beta(model, beta):
    """A copy of `model` with another (possibly traced) inverse temperature."""
    return eqx.tree_at(lambda mdl: mdl.beta, model, jnp.asarray(beta, model.beta.dtype))


def prepare_ensemble(model, key, *, n, d, seeds, dt, steps, betas, m, method, save_every, dtype):
    """Validated inputs of an ensemble run, shared by `ensemble` and `shard_ensemble`.

    Draws X0s (seeds, n, d) uniformly from jr.split(key, seeds), checks every argument
    (each beta of `betas` too), and resolves kernel="auto" once for the largest beta (a
    spectral order chosen there is accurate for every smaller beta). Returns
    (model, X0s, m, dt, steps, save_every, betas or None).
    """
    seeds = check_int(seeds, "seeds")
    keys = jr.split(key, seeds)
    X0s = jax.vmap(lambda k: uniform_sphere(k, n, d, dtype=dtype))(keys)
    X0, m, steps, save_every = _check_run(model, X0s[0], m, dt, steps, save_every, method)
    if betas is not None:
        betas = jnp.asarray(betas, model.beta.dtype)
        if betas.ndim != 1:
            raise ValueError(f"`betas` must be one-dimensional; got shape {betas.shape}.")
        for b in list(betas):
            check_positive_scalar(b, "betas")
            with_beta(model, b).check_representable(X0.dtype)
            check_step_representable(with_beta(model, b), dt, X0.dtype)
        batch = seeds * betas.shape[0]
        resolved = with_beta(model, betas.max()).resolve_kernel(
            *X0.shape, dtype=X0.dtype, batch=batch
        )
        model = with_beta(resolved, model.beta)
    else:
        model = model.resolve_kernel(*X0.shape, dtype=X0.dtype, batch=seeds)
    return model, X0s, m, _as_traced(dt, X0.dtype), steps, save_every, betas


def ensemble(
    model,
    key: PRNGKeyArray,
    *,
    n: int,
    d: int,
    seeds: int,
    dt,
    steps: int,
    betas=None,
    m=None,
    method: str = "euler",
    save_every: int | None = None,
    dtype=None,
) -> Trajectory:
    """Run `seeds` independent systems from uniform initial conditions, for every beta.

    Returns a Trajectory with xs of shape (len(betas), seeds, saves, n, d) (or
    (seeds, saves, n, d) when betas is None, using model.beta). One compilation: the
    ensemble is a vmap over PRNG keys and a vmap over beta of one jitted scan.
    """
    model, X0s, m, dt, steps, save_every, betas = prepare_ensemble(
        model,
        key,
        n=n,
        d=d,
        seeds=seeds,
        dt=dt,
        steps=steps,
        betas=betas,
        m=m,
        method=method,
        save_every=save_every,
        dtype=dtype,
    )
    return _ensemble(model, X0s, m, dt, steps, save_every, method, betas)


@eqx.filter_jit
def _ensemble(model, X0s, m, dt, steps, save_every, method, betas):
    run = lambda mdl, X0: _integrate_scan(mdl, X0, m, dt, steps, save_every, method)
    over_seeds = jax.vmap(run, in_axes=(None, 0))
    if betas is None:
        return over_seeds(model, X0s)
    return jax.vmap(lambda b: over_seeds(with_beta(model, b), X0s))(betas)


def integrate_diffrax(
    model,
    X0,
    *,
    t1: float,
    m=None,
    solver=None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    ts=None,
    max_steps: int = 100_000,
):
    """Adaptive integration with diffrax (optional dependency `meanfield[diffrax]`).

    Integrates the ambient ODE (which keeps the sphere invariant) with `solver`
    (default Tsit5) and a PID step-size controller, then retracts the saved states.
    Returns a Trajectory at times `ts` (default: [0, t1]).
    """
    try:
        import diffrax
    except ImportError as err:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "integrate_diffrax needs diffrax: pip install 'meanfield[diffrax]'"
        ) from err
    X0, m = model.check_inputs(X0, m, name="X0")
    model.check_representable(X0.dtype)
    check_positive_scalar(t1, "t1")
    model = model.resolve_kernel(*X0.shape, dtype=X0.dtype)
    ts = jnp.asarray([0.0, t1] if ts is None else ts, X0.dtype)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(model.vector_field),
        diffrax.Tsit5() if solver is None else solver,
        t0=0.0,
        t1=t1,
        dt0=dt0 if dt0 is not None else t1 / 100,
        y0=X0,
        args=m,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return Trajectory(sol.ts, retract(sol.ys))
