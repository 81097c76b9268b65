"""Ensembles: many independent systems from uniform initial conditions, over seeds and
betas, in one compilation.

The loop is outside the batch: one `lax.scan` (`_steps.scan_saves`) whose step moves every
system at once, the velocity vmapped over seeds (and betas) inside the step. So the whole
(betas x seeds) batch is one fused computation per step, with no per-system loop, and the
progress reports (`progress=True`) are one callback per report for the whole ensemble.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._validation import as_key, check_int, check_positive_scalar
from ..sphere import uniform_sphere
from ._progress import meter, reports_for
from ._results import Trajectory
from ._single import as_traced, check_run, check_step_representable, with_beta
from ._steps import make_step, scan_saves


def prepare_ensemble(model, key, *, n, d, seeds, dt, steps, betas, m, method, save_every, dtype):
    """Validated inputs of an ensemble run, shared by `ensemble` and `shard_ensemble`.

    Draws X0s (seeds, n, d) uniformly from jr.split(key, seeds), checks every argument
    (each beta of `betas` too), and resolves kernel="auto" once for the largest beta (a
    spectral order chosen there is accurate for every smaller beta). Returns
    (model, X0s, m, dt, steps, save_every, betas or None).
    """
    seeds = check_int(seeds, "seeds")
    keys = jr.split(as_key(key), seeds)
    X0s = jax.vmap(lambda k: uniform_sphere(k, n, d, dtype=dtype))(keys)
    X0, m, steps, save_every = check_run(model, X0s[0], m, dt, steps, save_every, method)
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
    return model, X0s, m, as_traced(dt, X0.dtype), steps, save_every, betas


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
    progress: bool = False,
) -> Trajectory:
    """Run `seeds` independent systems from uniform initial conditions, for every beta.

    **Arguments:**

    - `model`: a `MeanField`; `key`: PRNG key or integer seed (system k starts from
      `jr.split(key, seeds)[k]`).
    - `n`, `d`: particles per system and ambient dimension; `seeds`: number of systems.
    - `dt`, `steps`, `m`, `method`, `save_every`: as in `integrate`.
    - `betas`: (B,) inverse temperatures (default: model.beta only); `dtype`: of the points.
    - `progress`: a progress line on stderr (step, t, the max speed over all systems).

    **Returns:** a `Trajectory` with xs of shape (B, seeds, saves, n, d) (or
    (seeds, saves, n, d) when betas is None). One compilation for all systems and betas.
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
    reports = reports_for(progress, steps)
    systems = X0s.shape[0] * (1 if betas is None else len(betas))
    with meter(reports, f"ensemble of {systems}") as bar:
        return bar.done(_ensemble(model, X0s, m, dt, steps, save_every, method, betas, reports))


def batched_field(model, m, betas):
    """The velocity of every system at once (`MeanField.batched_velocity`): (seeds, n, d)
    -> (seeds, n, d), or with betas (B,) (B, seeds, n, d) -> (B, seeds, n, d)."""
    if betas is None:
        return lambda Xs: model.batched_velocity(Xs, m)

    def field(Xs):
        B, S = Xs.shape[:2]
        flat = Xs.reshape(B * S, *Xs.shape[2:])
        return model.batched_velocity(flat, m, jnp.repeat(betas, S)).reshape(Xs.shape)

    return field


@eqx.filter_jit
def _ensemble(model, X0s, m, dt, steps, save_every, method, betas, reports=None):
    if model.has_lanes_path():
        return _ensemble_lanes(model, X0s, m, dt, steps, save_every, method, betas, reports)
    if betas is not None:
        X0s = jnp.broadcast_to(X0s, (betas.shape[0], *X0s.shape))
    field = batched_field(model, m, betas)
    traj = scan_saves(make_step(method), field, X0s, dt, steps, save_every, reports=reports)
    xs = jnp.moveaxis(traj.xs, 0, -3)  # (saves, ..., n, d) -> (..., saves, n, d)
    return Trajectory(jnp.broadcast_to(traj.ts, xs.shape[:-2]), xs)


def _ensemble_lanes(model, X0s, m, dt, steps, save_every, method, betas, reports):
    """The run with the state in the lanes layout (d, n, systems) from start to end: every
    (beta, seed) system is one lane, and the step never transposes."""
    S, n, d = X0s.shape
    B = 1 if betas is None else betas.shape[0]
    lanes = jnp.tile(jnp.transpose(X0s, (2, 1, 0)), (1, 1, B))  # lane b * S + s
    beta_of_lane = jnp.broadcast_to(model.beta, (S,)) if betas is None else jnp.repeat(betas, S)
    field = lambda XP: model.lanes_velocity(XP, m, beta_of_lane)
    step = make_step(method, axis=0)
    traj = scan_saves(step, field, lanes, dt, steps, save_every, reports=reports, axis=0)
    xs = jnp.transpose(traj.xs, (3, 0, 2, 1))  # (saves, d, n, lanes) -> (lanes, saves, n, d)
    xs = xs.reshape(S, *xs.shape[1:]) if betas is None else xs.reshape(B, S, *xs.shape[1:])
    return Trajectory(jnp.broadcast_to(traj.ts, xs.shape[:-2]), xs)
