"""Implicit scales of a softmax row, found by a safeguarded Newton root solver and
differentiable by the implicit function theorem (custom JVP): the beta where
p_max = level (`beta_at_pmax`, level 1/2 by default) and the beta where H = theta log n
(`beta_at_entropy_fraction`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_batch_broadcast, check_open_unit, check_scores
from ._softmax import _gaps_and_mask, _live_count, _live_rows


def _lse_competitors(delta, mask, beta):
    """log sum_{j != argmax} exp(-beta Delta_j) for one row (-inf if n = 1)."""
    x = jnp.where(mask, -jnp.inf, -beta * delta)
    return jax.nn.logsumexp(x)


def _residual(kind: str, s, level, beta):
    """Decreasing function of beta whose root is the implicit scale (one row)."""
    delta, mask = _gaps_and_mask(s)
    if kind == "pmax":
        # p_max = 1 / (1 + sum_{j != *} e^{-beta Delta}) = level
        return _lse_competitors(delta, mask, beta) - jnp.log1p(-level) + jnp.log(level)
    # entropy: H(beta) - theta log n
    e = jnp.where(mask, 0.0, jnp.exp(-beta * delta))
    zm1 = jnp.sum(e)
    h = jnp.log1p(zm1) + beta * jnp.sum(e * delta) / (1.0 + zm1)
    return h - level * jnp.log(_live_count(s).astype(s.dtype))  # log m, m live keys


def _initial_beta(kind: str, s, level):
    delta, mask = _gaps_and_mask(s)
    live = s > -jnp.inf
    m = jnp.sum(live).astype(s.dtype)
    if kind == "pmax":
        mean = jnp.sum(jnp.where(mask, 0.0, delta)) / jnp.maximum(m - 1, 1.0)
        guess = jnp.log(jnp.maximum(m - 1, 1.0)) / mean
    else:
        var = jnp.var(jnp.where(live, s, 0.0), where=live)
        guess = jnp.sqrt(2 * (1 - level) * jnp.log(jnp.maximum(m, 2.0)) / var)
    return jnp.where(jnp.isfinite(guess) & (guess > 0), guess, 1.0)


def _solve_row(kind: str, s, level, max_steps: int = 200):
    """Root of the decreasing residual G(beta) on [0, inf): bracket by doubling, then
    safeguarded Newton (bisection whenever Newton leaves the bracket). Returns inf when
    G stays >= 0 (no finite root, e.g. ties at the top) and 0 when G(0) <= 0."""
    dtype = s.dtype
    eps = jnp.finfo(dtype).eps
    g = functools.partial(_residual, kind, s, level)
    g0 = g(jnp.zeros((), dtype))
    x0 = _initial_beta(kind, s, level).astype(dtype)

    # Bracket [lo, hi] with G(lo) >= 0 > G(hi).
    def grow_cond(c):
        _, hi, ghi, i = c
        return (ghi >= 0) & (i < 200) & jnp.isfinite(hi)

    def grow(c):
        lo, hi, ghi, i = c
        return hi, 2 * hi, g(2 * hi), i + 1

    lo, hi, ghi, _ = lax.while_loop(grow_cond, grow, (jnp.zeros((), dtype), x0, g(x0), 0))
    found = ghi < 0

    def cond(c):
        lo, hi, x, i = c
        return (i < max_steps) & (hi - lo > 4 * eps * hi)

    def step(c):
        lo, hi, x, i = c
        gx, dgx = jax.value_and_grad(g)(x)
        lo = jnp.where(gx >= 0, x, lo)
        hi = jnp.where(gx < 0, x, hi)
        newton = x - gx / dgx
        mid = jnp.where(lo > 0, jnp.sqrt(lo * hi), 0.5 * hi)
        ok = jnp.isfinite(newton) & (newton >= lo) & (newton <= hi)
        # Converged (exact zero, or Newton step below tolerance): collapse the bracket.
        done = (ok & (jnp.abs(newton - x) <= 16 * eps * x)) | (gx == 0)
        x_new = jnp.where(gx == 0, x, jnp.where(ok, newton, mid))
        lo = jnp.where(done, x_new, lo)
        hi = jnp.where(done, x_new, hi)
        return lo, hi, x_new, i + 1

    lo, hi, x, _ = lax.while_loop(cond, step, (lo, hi, 0.5 * (lo + hi), 0))
    root = jnp.where(hi - lo <= 4 * eps * hi, 0.5 * (lo + hi), x)
    root = jnp.where(found, root, jnp.inf)
    return jnp.where(g0 <= 0, jnp.zeros((), dtype), root)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _implicit_root(kind: str, s, level):
    return _solve_row(kind, s, level)


@_implicit_root.defjvp
def _implicit_root_jvp(kind, primals, tangents):
    s, level = primals
    ds, dlevel = tangents
    beta = _solve_row(kind, s, level)
    safe = jnp.where(jnp.isfinite(beta), beta, 0.0)
    g = lambda s_, l_, b_: _residual(kind, s_, l_, b_)
    _, dg = jax.jvp(lambda s_, l_: g(s_, l_, safe), (s, level), (ds, dlevel))
    dgdb = jax.grad(g, argnums=2)(s, level, safe)
    ok = jnp.isfinite(beta) & (beta > 0) & (dgdb != 0)
    dbeta = jnp.where(ok, -dg / jnp.where(ok, dgdb, 1.0), 0.0)
    return beta, dbeta


@functools.partial(jax.jit, static_argnames=("kind",))
def _implicit_core(kind, s, level):
    n = s.shape[-1]
    flat_s = s.reshape(-1, n)
    flat_l = jnp.broadcast_to(level, s.shape[:-1]).reshape(-1)
    out = jax.vmap(functools.partial(_implicit_root, kind))(flat_s, flat_l)
    return out.reshape(s.shape[:-1])


def beta_at_pmax(scores: ArrayLike, level: ArrayLike = 0.5, where=None) -> Float[Array, "..."]:
    """The beta where p_max(beta) = level, i.e. sum_{j != argmax} exp(-beta Delta_j) = 1/level - 1.

    Shape (..., n) -> (...,); level in (0, 1), scalar or one per row. p_max increases from
    1/n to 1 (unique maximum), so the root is unique; returns 0 if level <= 1/n and +inf if
    the maximum is tied m times and level >= 1/m. Found by safeguarded Newton (relative
    accuracy ~ machine epsilon) and differentiable in scores and level by the implicit
    function theorem: d beta = -(dG/ds . ds) / (dG/dbeta).

    `where` masks keys as in `critical_beta` (n becomes the number m of live keys); rows
    with m < 2 live keys give NaN.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `level`: in the open interval (0, 1) (default 0.5), a scalar or one per row
        (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** beta in [0, +inf], shape ``scores.shape[:-1]``.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast, or if `level`
    is not in (0, 1) or does not broadcast to the batch shape.
    """
    s = check_scores(scores, min_n=2, where=where)
    lv = check_open_unit(level, s.dtype, "level")
    check_batch_broadcast(lv, s.shape[:-1], "level")
    return _live_rows(_implicit_core("pmax", s, lv), s, 2)


def beta_at_pmax_half(scores: ArrayLike, where=None) -> Float[Array, "..."]:
    """The beta where p_max = 1/2 (the largest weight equals the sum of all others).

    For the planted simplex (one score 1, n - 1 scores rho) this is log(n - 1)/(1 - rho).
    `where` as in `beta_at_pmax`.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** ``beta_at_pmax(scores, 0.5, where=where)``, shape ``scores.shape[:-1]``.

    **Raises:** as `beta_at_pmax`.
    """
    return beta_at_pmax(scores, 0.5, where=where)


def beta_at_entropy_fraction(
    scores: ArrayLike, theta: ArrayLike = 0.5, where=None
) -> Float[Array, "..."]:
    """The beta where H(beta) = theta log n, theta in (0, 1) (scalar or one per row).

    H decreases from log n at beta = 0 to log(m) (m = number of maxima), so the root is unique;
    +inf if log m >= theta log n. Random energy model (Gaussian scores, sd sigma):
    beta ~ sqrt(1 - theta) sqrt(2 log n) / sigma. Differentiable in scores and theta by the
    implicit function theorem (custom JVP, derivative checked against finite differences).

    `where` masks keys as in `critical_beta`: n is then the number m of live keys of the
    row (H = theta log m); rows with m < 2 give NaN.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `theta`: in the open interval (0, 1) (default 0.5), a scalar or one per row
        (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** beta in (0, +inf], shape ``scores.shape[:-1]``.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast, or if `theta`
    is not in (0, 1) or does not broadcast to the batch shape.
    """
    s = check_scores(scores, min_n=2, where=where)
    th = check_open_unit(theta, s.dtype, "theta")
    check_batch_broadcast(th, s.shape[:-1], "theta")
    return _live_rows(_implicit_core("entropy", s, th), s, 2)
