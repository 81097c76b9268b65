"""Adaptive integration through diffrax (optional dependency `meanfield[diffrax]`)."""

from __future__ import annotations

import jax.numpy as jnp

from .._validation import check_positive_scalar
from ..sphere import retract
from ._results import Trajectory


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

    Integrates the ambient ODE (which keeps the sphere invariant) with `solver` and a PID
    step-size controller, then retracts the saved states.

    **Arguments:** `model`, `X0` (n, d), `t1` (final time), `m` (masses), `solver`
    (default `diffrax.Tsit5()`), `rtol` / `atol` (controller tolerances), `dt0` (first
    step, default t1 / 100), `ts` (save times, default [0, t1]), `max_steps`.

    **Returns:** a `Trajectory` at the times `ts`.
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
