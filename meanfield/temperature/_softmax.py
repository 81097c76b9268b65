"""Softmax statistics of score rows from their gaps Delta_j = max(s) - s_j >= 0:

    Z(beta) = sum_j exp(-beta Delta_j),   H(beta) = log Z + beta <p, Delta>,   p_max = 1 / Z,
    dH/dbeta = -beta Var_p(s),

at one beta or on a grid of betas (`entropy_curve`, `softmax_curves`: one compiled call,
blocked over the grid), with masks (`where=`) handled by the double-where rule.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from .._validation import check_batch_broadcast, check_beta_grid, check_nonneg, check_scores
from .._validation import is_concrete as _is_concrete


def _live_count(s: Float[Array, "... n"]) -> Int[Array, "..."]:
    """Number m of live (not -inf) keys of each row."""
    return jnp.sum(s > -jnp.inf, axis=-1)


def _live_rows(out, s, min_n: int, extra_axes: int = 0):
    """`out` with NaN in the rows of `s` that have fewer than `min_n` live keys.

    The documented choice for such rows (a softmax needs one key, a gap two): NaN, never a
    number that would look meaningful. `extra_axes` trailing axes of `out` (a beta or t
    grid) are broadcast over.
    """
    ok = _live_count(s) >= min_n
    ok = ok.reshape(ok.shape + (1,) * extra_axes)
    return jnp.where(ok, out, jnp.nan)


def _gaps_and_mask(s: Float[Array, "... n"]) -> tuple[Float[Array, "... n"], Array]:
    """Gaps Delta = max(s) - s and a mask of the keys excluded from competitor sums: the
    (first) argmax and every masked (-inf) key.

    Masked keys get Delta = 0 (a safe value: they are excluded by the mask, and no inf or
    NaN enters the forward pass, so gradients through the mask stay finite: the "double
    where"). A row with no live key gets top = 0.
    """
    live = s > -jnp.inf
    top = jnp.max(s, axis=-1, keepdims=True)
    top = jnp.where(top > -jnp.inf, top, 0.0)
    delta = top - jnp.where(live, s, top)
    first = jnp.argmax(s, axis=-1)
    mask = (jnp.arange(s.shape[-1]) == first[..., None]) | ~live
    return delta, mask


@jax.jit
def _one_beta_stats(s, beta):
    """log Z, <p, Delta>, Var_p(Delta), Z - 1 and sum_{j != *} exp(-2 beta Delta) at one beta."""
    delta, mask = _gaps_and_mask(s)
    e = jnp.where(mask, 0.0, jnp.exp(-beta[..., None] * delta))
    zm1 = jnp.sum(e, axis=-1)  # Z - 1, exact for small values (argmax term excluded)
    z = 1.0 + zm1
    mean = jnp.sum(e * delta, axis=-1) / z  # argmax term has Delta = 0
    # Var_p(Delta) = sum p (Delta - mean)^2, two-pass for accuracy; argmax term: p_* mean^2.
    var = (jnp.sum(e * (delta - mean[..., None]) ** 2, axis=-1) + mean**2) / z
    e2 = jnp.sum(e * e, axis=-1)
    return jnp.log1p(zm1), mean, var, zm1, e2


def _prepare(scores, beta, min_n: int = 1, where=None):
    s = check_scores(scores, min_n=min_n, where=where)
    b = check_nonneg(beta, s.dtype, "beta")
    check_batch_broadcast(b, s.shape[:-1], "beta")
    return s, jnp.broadcast_to(b, s.shape[:-1])


def softmax_probs(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "... n"]:
    """p = softmax(beta s) along the last axis, computed as exp(-beta Delta) / Z.

    `beta` is a scalar or one value per row (shape broadcastable to ``scores.shape[:-1]``).
    Stable for beta up to 1e4 and scores up to 1e3 in float32 (no exp of a positive number).
    Masked keys (`where` False, or score -inf) get probability exactly 0; a row with no
    live key is NaN.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** p, of the shape (..., n) of `scores`: each row sums to 1 over its live keys.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    s, b = _prepare(scores, beta, where=where)
    return _live_rows(_probs(s, b), s, 1, extra_axes=1)


@jax.jit
def _probs(s, b):
    delta, _ = _gaps_and_mask(s)
    live = s > -jnp.inf
    logits = -b[..., None] * delta
    lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True, where=live)
    return jnp.where(live, jnp.exp(logits - jnp.where(live, lse, 0.0)), 0.0)


def log_partition(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """log sum_j exp(beta s_j) = beta max(s) + log Z over the live keys, shape (...).

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** an array of shape ``scores.shape[:-1]``; NaN on rows with no live key.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    s, b = _prepare(scores, beta, where=where)
    log_z = _one_beta_stats(s, b)[0]
    top = jnp.max(jnp.where(s > -jnp.inf, s, 0.0), axis=-1, initial=-jnp.inf, where=s > -jnp.inf)
    return _live_rows(b * top + log_z, s, 1)


def softmax_entropy(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """Entropy H(beta) = -sum p log p = log Z + beta <p, Delta> of p = softmax(beta s).

    Shapes: scores (..., n), beta scalar or (...,); returns (...,). H(0) = log n; for a unique
    maximum H -> 0 as beta -> inf; with m scores tied at the maximum H -> log m.
    Differentiable in scores and beta: dH/dbeta = -beta Var_p(s) (see `entropy_derivative`).

    `where` (optional): a boolean array broadcastable to the scores; keys where it is False,
    and keys whose score is -inf, are left out exactly as if the row were shorter (values
    and gradients; masked keys get a zero gradient). A row with one live key has H = 0; a
    row with none gives NaN.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** H, an array of shape ``scores.shape[:-1]``, in [0, log m] for m live keys
    (NaN for m = 0).

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    s, b = _prepare(scores, beta, where=where)
    log_z, mean = _one_beta_stats(s, b)[:2]
    return _live_rows(log_z + b * mean, s, 1)


def entropy_derivative(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """dH/dbeta = -beta Var_p(s) in closed form, shape (...,). `where` as in `softmax_entropy`.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** dH/dbeta, an array of shape ``scores.shape[:-1]``, <= 0 (0 at beta = 0);
    NaN on rows with no live key.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    s, b = _prepare(scores, beta, where=where)
    var = _one_beta_stats(s, b)[2]
    return _live_rows(-b * var, s, 1)


def p_max(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """Largest softmax weight, p_max = 1 / Z = 1 / sum_j exp(-beta Delta_j), shape (...,).

    `where` as in `softmax_entropy`.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** p_max, an array of shape ``scores.shape[:-1]``, in [1/m, 1] for m live keys
    (NaN for m = 0).

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    s, b = _prepare(scores, beta, where=where)
    zm1 = _one_beta_stats(s, b)[3]
    return _live_rows(1.0 / (1.0 + zm1), s, 1)


def effective_support(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """exp(H): the number of keys the row effectively attends to, in [1, m] (m live keys).

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** exp(`softmax_entropy`), an array of shape ``scores.shape[:-1]``; NaN on
    rows with no live key.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    return jnp.exp(softmax_entropy(scores, beta, where=where))


def participation(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """Participation sum_j p_j^2 = (1 + sum_{j != *} exp(-2 beta Delta_j)) / Z^2, in [1/m, 1].

    `where` as in `softmax_entropy`.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `beta`: inverse temperature, finite and >= 0 (default 1.0): a scalar or one value per
        row (broadcastable to ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** sum_j p_j^2, an array of shape ``scores.shape[:-1]``; NaN on rows with no
    live key.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `beta` is
    negative, not finite, or does not broadcast to the batch shape.
    """
    s, b = _prepare(scores, beta, where=where)
    _, _, _, zm1, e2 = _one_beta_stats(s, b)
    return _live_rows((1.0 + e2) / (1.0 + zm1) ** 2, s, 1)


class SoftmaxCurves(NamedTuple):
    """Entropy, largest weight and participation on a beta grid, each of shape (..., B).

    Returned by `softmax_curves` (a `NamedTuple`, so it also unpacks as a triple); B is the
    length of the beta grid and (...) the batch shape of the scores.

    **Fields:**

    - `entropy`: (..., B) H(beta) (as `softmax_entropy`).
    - `p_max`: (..., B) largest weight (as `p_max`).
    - `participation`: (..., B) sum_j p_j^2 (as `participation`).
    """

    entropy: Float[Array, "... B"]
    p_max: Float[Array, "... B"]
    participation: Float[Array, "... B"]


#: Elements of the exp-block materialised per step of the curve kernel (bounds memory).
_CURVE_BLOCK = 1 << 21


def _row_curve(delta, keep, betas_blocks, with_e2: bool):
    """Curve statistics of one row, looping over blocks of betas.

    delta: (n,), keep: (n,) 1.0 except 0.0 at the argmax, betas_blocks: (nb, bc).
    For each beta the block E = exp(-beta Delta) (bc, n) is computed once and reduced with a
    single matrix product against [keep, Delta] (so the exponential is evaluated once per
    element, not once per statistic); returns Z - 1, sum p Delta * Z and sum_{j != *} e^2.
    """
    cols = jnp.stack([keep, delta], axis=-1)  # (n, 2)

    def block(b):
        e = jnp.exp(-b[:, None] * delta[None, :])  # (bc, n)
        e = lax.optimization_barrier(e)
        out = e @ cols  # (bc, 2)
        e2 = jnp.sum(e * e * keep, axis=-1) if with_e2 else jnp.zeros_like(b)
        return out[:, 0], out[:, 1], e2

    zm1, sd, e2 = lax.map(block, betas_blocks)
    return zm1.reshape(-1), sd.reshape(-1), e2.reshape(-1)


@functools.partial(jax.jit, static_argnames=("with_e2",))
def _curves_core(s, betas, with_e2: bool = True):
    n = s.shape[-1]
    batch = s.shape[:-1]
    rows = s.reshape(-1, n)
    nb_total = betas.shape[0]
    bc = int(max(1, min(nb_total, _CURVE_BLOCK // n, 64)))
    nblocks = -(-nb_total // bc)
    padded = jnp.concatenate([betas, jnp.zeros((nblocks * bc - nb_total,), betas.dtype)])
    blocks = padded.reshape(nblocks, bc)

    def one_row(row):
        delta, mask = _gaps_and_mask(row)
        keep = jnp.where(mask, 0.0, 1.0).astype(row.dtype)
        zm1, sd, e2 = _row_curve(delta, keep, blocks, with_e2)
        return zm1[:nb_total], sd[:nb_total], e2[:nb_total]

    zm1, sd, e2 = lax.map(one_row, rows)
    z = 1.0 + zm1
    entropy = jnp.log1p(zm1) + betas * sd / z
    pmax = 1.0 / z
    part = (1.0 + e2) / z**2
    shape = (*batch, nb_total)
    return entropy.reshape(shape), pmax.reshape(shape), part.reshape(shape)


@functools.partial(jax.jit, static_argnames=("n_beta", "with_e2"))
def _curves_uniform_core(s, beta0, step, n_beta: int, with_e2: bool = True):
    """Curves on the arithmetic grid beta_j = beta0 + j step, j < n_beta, by factorisation.

    With j = i R + r (R ~ sqrt(n_beta)), exp(-beta_j Delta) = A_i(Delta) B_r(Delta) with
    A_i = exp(-(beta0 + i R step) Delta) and B_r = exp(-r step Delta), so every sum over keys
    is a small matrix product: Z - 1 = (keep A)^T B, sum Delta e = (keep Delta A)^T B, and
    sum e^2 = (keep A^2)^T B^2. That is 2 sqrt(n_beta) exponentials per key instead of
    n_beta, each term exact to two roundings.
    """
    n = s.shape[-1]
    batch = s.shape[:-1]
    rows = s.reshape(-1, n)
    R = max(1, math.isqrt(n_beta - 1) + 1) if n_beta > 1 else 1
    n_i = -(-n_beta // R)
    outer = beta0 + step * R * jnp.arange(n_i, dtype=s.dtype)  # (I,)
    inner = step * jnp.arange(R, dtype=s.dtype)  # (R,)

    def one_row(row):
        delta, mask = _gaps_and_mask(row)
        keep = jnp.where(mask, 0.0, 1.0).astype(row.dtype)
        A = jnp.exp(-delta[:, None] * outer[None, :]) * keep[:, None]  # (n, I)
        B = jnp.exp(-delta[:, None] * inner[None, :])  # (n, R)
        sums = jnp.concatenate([A, A * delta[:, None]], axis=1).T @ B  # (2I, R)
        zm1, sd = sums[:n_i].reshape(-1), sums[n_i:].reshape(-1)
        e2 = ((A * A).T @ (B * B)).reshape(-1) if with_e2 else jnp.zeros_like(zm1)
        return zm1[:n_beta], sd[:n_beta], e2[:n_beta]

    zm1, sd, e2 = lax.map(one_row, rows)
    betas = beta0 + step * jnp.arange(n_beta, dtype=s.dtype)
    z = 1.0 + zm1
    entropy = jnp.log1p(zm1) + betas * sd / z
    shape = (*batch, n_beta)
    return entropy.reshape(shape), (1.0 / z).reshape(shape), ((1.0 + e2) / z**2).reshape(shape)


def _arithmetic_grid(betas) -> tuple[float, float] | None:
    """(beta0, step) if the concrete grid is arithmetic to rounding, else None."""
    if not _is_concrete(betas) or betas.shape[0] < 16:
        return None
    b = np.asarray(betas, dtype=np.float64)
    step = (b[-1] - b[0]) / (len(b) - 1)
    if not step > 0:
        return None
    ideal = b[0] + step * np.arange(len(b))
    tol = 8 * float(jnp.finfo(betas.dtype).eps) * max(1.0, float(np.max(np.abs(b))))
    return (float(b[0]), float(step)) if np.max(np.abs(ideal - b)) <= tol else None


def _curves(s, b, with_e2: bool):
    grid = _arithmetic_grid(b)
    if grid is not None:
        beta0, step = (jnp.asarray(v, s.dtype) for v in grid)
        return _curves_uniform_core(s, beta0, step, b.shape[0], with_e2)
    return _curves_core(s, b, with_e2=with_e2)


def entropy_curve(scores: ArrayLike, betas: ArrayLike, where=None) -> Float[Array, "... B"]:
    """H(beta) for every beta of a 1-D grid, in one compiled call: shape (..., len(betas)).

    Memory is bounded: rows are processed one at a time and betas in blocks so that at most
    ~2^21 exponentials are held at once; the exponential is evaluated once per (row, beta,
    key). Arithmetic grids (e.g. ``jnp.linspace``, at least 16 points) take a factorised
    path with ~2 sqrt(B) exponentials per key (`_curves_uniform_core`), 4-5x faster.
    Identical (to rounding) to ``softmax_entropy(scores, beta)`` at each grid point.

    `where` (optional, broadcastable to the scores) and -inf scores mask keys exactly as
    in `softmax_entropy`; rows without a live key give NaN.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `betas`: (B,) a non-empty 1-D grid of inverse temperatures, finite and >= 0.
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** H on the grid, shape (..., B).

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has NaN or
    +inf at a live key, if `where` is not boolean or does not broadcast, or if `betas` is
    not a non-empty 1-D grid of finite values >= 0.
    """
    s = check_scores(scores, where=where)
    b = check_beta_grid(betas, s.dtype)
    return _live_rows(_curves(s, b, with_e2=False)[0], s, 1, extra_axes=1)


def softmax_curves(scores: ArrayLike, betas: ArrayLike, where=None) -> SoftmaxCurves:
    """Entropy, p_max and participation sum p^2 on a beta grid, each of shape (..., B).

    `where` masks keys as in `entropy_curve`.

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 1; finite, or -inf for a masked key.
    - `betas`: (B,) a non-empty 1-D grid of inverse temperatures, finite and >= 0.
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** a `SoftmaxCurves` of three (..., B) arrays; NaN on rows with no live key.

    **Raises:** as `entropy_curve`.
    """
    s = check_scores(scores, where=where)
    b = check_beta_grid(betas, s.dtype)
    curves = _curves(s, b, with_e2=True)
    return SoftmaxCurves(*(_live_rows(c, s, 1, extra_axes=1) for c in curves))
