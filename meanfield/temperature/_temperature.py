"""Critical inverse temperature of softmax rows (docs/design.md, section 3).

After Karakida and Hayase (2026), "A Unified Framework for Critical Scaling of Inverse
Temperature in Self-Attention" (arXiv 2605.12697).

For one attention row with scores s_1..s_n (an array ``(n,)``, or a batch ``(..., n)``; every
function works along the last axis) and an inverse temperature beta >= 0:

    p(beta) = softmax(beta s),      H(beta) = -sum_j p_j log p_j,      p_max = max_j p_j.

Everything is computed from the gaps Delta_j = max(s) - s_j >= 0, which makes it exactly
shift invariant and numerically stable (no exp of a positive number ever appears):

    Z(beta) = sum_j exp(-beta Delta_j) = 1 + sum_{j != argmax} exp(-beta Delta_j)   in [1, n]
    H(beta) = log Z + beta <p, Delta>,        p_max = 1 / Z,
    dH/dbeta = -beta Var_p(s).

Gap counting: N_n(t) = #{j != argmax : Delta_j <= t}, sorted gaps Delta_(1) <= ... <= Delta_(n-1)
of the n - 1 non-maximal scores, and the partition identity

    sum_j exp(-beta Delta_j) = 1 + beta int_0^inf exp(-beta t) N_n(t) dt.

Candidate critical scale ("upper-tail accumulation scale"):

    beta*_n = sup_t log N_n(t) / t = max_{1 <= k <= n-1} log k / Delta_(k).

Implicit scales, found by a safeguarded Newton root solver and differentiable with respect to
the scores by the implicit function theorem: the beta where p_max = 1/2 (or any level), and the
beta where H = theta log n.

Score families with their leading-order laws (`predicted_critical_beta`) and a sampler
(`sample_scores`), and the bridge to particle systems (`score_rows`,
`critical_beta_of_particles`).

Masks: every function of score rows takes ``where=`` (a boolean array broadcastable to the
scores) and also reads -inf scores as masked. Masked keys are left out exactly as if the row
were shorter (values, and gradients: masked keys get gradient 0 and never a NaN, by the
"double where": the cores replace masked entries by safe finite values before any
arithmetic and select them out afterwards). A row then has m live keys; quantities that
need m >= 1 (entropy, p_max, curves) or m >= 2 (gaps, critical scales, implicit roots) are
NaN on rows with fewer (counts are 0: no competitor). NaN and +inf at live keys still raise.

Conventions: float32 unless the scores are float64 (x64 enabled); beta is a traced value
(no recompilation per beta); bad concrete input raises ``ValueError`` naming the argument
before any computation; traced input is checked with ``equinox.error_if``.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._validation import float_dtype as _float_dtype
from .._validation import is_concrete as _is_concrete

#: Score families known to `sample_scores` and `predicted_critical_beta`, with their
#: parameters and defaults.
FAMILIES: dict[str, dict[str, float]] = {
    "gaussian": {"sigma": 1.0},
    "weibull": {"p": 2.0, "sigma": 1.0},
    "planted_simplex": {"rho": 0.5, "noise": 0.0},
    "finite_endpoint": {"c": 1.0},
    "sphere_cosine": {"d": 3},
    "gumbel": {"sigma": 1.0},
    "exponential": {"sigma": 1.0},
    "uniform": {"sigma": 1.0},
}


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _check_scores(scores, name: str = "scores", min_n: int = 1, where=None) -> Array:
    """Scores as a float array of shape (..., n), n >= min_n, masked keys set to -inf.

    Masking (docs/design.md, section 3, "n is the number of keys a query sees"): a key is *live*
    when `where` is True there (default everywhere) and its score is not -inf; every other
    key is set to -inf, which the computational cores read as "absent". NaN and +inf at live
    keys raise (eagerly for concrete input, `equinox.error_if` under jit); values at keys
    masked by `where` are not inspected. Rows with too few live keys are handled by
    `_live_rows` (NaN), not here.
    """
    if not hasattr(scores, "shape"):
        scores = np.asarray(scores)
    if scores.ndim < 1:
        raise ValueError(f"`{name}` must have shape (..., n) with n >= {min_n}; got a scalar.")
    n = scores.shape[-1]
    if n == 0:
        raise ValueError(f"`{name}` is empty (n = 0 keys); a softmax row needs n >= 1.")
    if n < min_n:
        raise ValueError(
            f"`{name}` must have at least {min_n} entries along the last axis; got n = {n}."
        )
    scores = jnp.asarray(scores, dtype=_float_dtype(scores))
    if scores.size == 0:
        raise ValueError(f"`{name}` has an empty batch shape {tuple(scores.shape)}.")
    if where is not None:
        if not hasattr(where, "shape"):
            where = np.asarray(where)
        if where.dtype != bool:
            raise ValueError(f"`where` must be a boolean array; got dtype {where.dtype}.")
        try:
            shape = jnp.broadcast_shapes(where.shape, scores.shape)
        except ValueError:
            shape = None
        if shape != scores.shape:
            raise ValueError(
                f"`where` of shape {tuple(where.shape)} must broadcast to the shape "
                f"{tuple(scores.shape)} of `{name}`."
            )
        where = jnp.broadcast_to(jnp.asarray(where), scores.shape)
        invalid = where & (jnp.isnan(scores) | (scores == jnp.inf))
    else:
        invalid = jnp.isnan(scores) | (scores == jnp.inf)
    bad = jnp.any(invalid)
    if _is_concrete(scores) and (where is None or _is_concrete(where)):
        if bool(bad):
            count = int(jnp.sum(invalid))
            raise ValueError(
                f"`{name}` contains {count} NaN or +inf value(s) at live keys; scores must be "
                "finite (use -inf or `where=False` to mask a key)."
            )
    else:
        scores = eqx.error_if(
            scores, bad, f"`{name}` contains NaN or +inf; scores must be finite or -inf."
        )
    if where is not None:
        scores = jnp.where(where, scores, -jnp.inf)
    return scores


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


def _check_bounded(x, dtype, name: str, *, strict: bool) -> Array:
    """A finite float array that is > 0 (strict) or >= 0: beta, t, temperature, ...

    Eager ValueError on concrete values; equinox.error_if under jit.
    """
    x = jnp.asarray(x, dtype=dtype)
    bound = "> 0" if strict else ">= 0"
    bad = ~jnp.all(jnp.isfinite(x) & ((x > 0) if strict else (x >= 0)))
    if _is_concrete(x):
        if bool(bad):
            raise ValueError(f"`{name}` must be finite and {bound}; got {np.asarray(x)!r}.")
        return x
    return eqx.error_if(x, bad, f"`{name}` must be finite and {bound}.")


def _check_nonneg(x, dtype, name: str) -> Array:
    return _check_bounded(x, dtype, name, strict=False)


def _check_positive(x, dtype, name: str) -> Array:
    return _check_bounded(x, dtype, name, strict=True)


def _check_open_unit(x, dtype, name: str) -> Array:
    x = jnp.asarray(x, dtype=dtype)
    bad = ~jnp.all((x > 0) & (x < 1))
    if _is_concrete(x):
        if bool(bad):
            raise ValueError(
                f"`{name}` must lie in the open interval (0, 1); got {np.asarray(x)!r}."
            )
        return x
    return eqx.error_if(x, bad, f"`{name}` must lie in the open interval (0, 1).")


def _check_batch_broadcast(x, batch_shape, name: str) -> None:
    try:
        shape = jnp.broadcast_shapes(jnp.shape(x), tuple(batch_shape))
    except ValueError:
        shape = None
    if shape != tuple(batch_shape):
        raise ValueError(
            f"`{name}` of shape {jnp.shape(x)} must broadcast to the batch shape "
            f"{tuple(batch_shape)} of the scores (one value per row, or a scalar)."
        )


# --------------------------------------------------------------------------------------
# Gaps and one-beta quantities
# --------------------------------------------------------------------------------------


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
    s = _check_scores(scores, min_n=min_n, where=where)
    b = _check_nonneg(beta, s.dtype, "beta")
    _check_batch_broadcast(b, s.shape[:-1], "beta")
    return s, jnp.broadcast_to(b, s.shape[:-1])


def softmax_probs(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "... n"]:
    """p = softmax(beta s) along the last axis, computed as exp(-beta Delta) / Z.

    `beta` is a scalar or one value per row (shape broadcastable to ``scores.shape[:-1]``).
    Stable for beta up to 1e4 and scores up to 1e3 in float32 (no exp of a positive number).
    Masked keys (`where` False, or score -inf) get probability exactly 0; a row with no
    live key is NaN.
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
    """log sum_j exp(beta s_j) = beta max(s) + log Z over the live keys, shape (...)."""
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
    """
    s, b = _prepare(scores, beta, where=where)
    log_z, mean = _one_beta_stats(s, b)[:2]
    return _live_rows(log_z + b * mean, s, 1)


def entropy_derivative(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """dH/dbeta = -beta Var_p(s) in closed form, shape (...,). `where` as in `softmax_entropy`."""
    s, b = _prepare(scores, beta, where=where)
    var = _one_beta_stats(s, b)[2]
    return _live_rows(-b * var, s, 1)


def p_max(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """Largest softmax weight, p_max = 1 / Z = 1 / sum_j exp(-beta Delta_j), shape (...,).

    `where` as in `softmax_entropy`.
    """
    s, b = _prepare(scores, beta, where=where)
    zm1 = _one_beta_stats(s, b)[3]
    return _live_rows(1.0 / (1.0 + zm1), s, 1)


def effective_support(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """exp(H): the number of keys the row effectively attends to, in [1, m] (m live keys)."""
    return jnp.exp(softmax_entropy(scores, beta, where=where))


def participation(scores: ArrayLike, beta: ArrayLike = 1.0, where=None) -> Float[Array, "..."]:
    """Participation sum_j p_j^2 = (1 + sum_{j != *} exp(-2 beta Delta_j)) / Z^2, in [1/m, 1].

    `where` as in `softmax_entropy`.
    """
    s, b = _prepare(scores, beta, where=where)
    _, _, _, zm1, e2 = _one_beta_stats(s, b)
    return _live_rows((1.0 + e2) / (1.0 + zm1) ** 2, s, 1)


# --------------------------------------------------------------------------------------
# Curves over a beta grid
# --------------------------------------------------------------------------------------


class SoftmaxCurves(NamedTuple):
    """Entropy, largest weight and participation on a beta grid, each of shape (..., B)."""

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


def _check_grid(betas, dtype, name: str = "betas") -> Array:
    if not hasattr(betas, "shape"):
        betas = np.asarray(betas)
    if betas.ndim != 1 or betas.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D grid; got shape {tuple(betas.shape)}.")
    return _check_nonneg(betas, dtype, name)


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
    """
    s = _check_scores(scores, where=where)
    b = _check_grid(betas, s.dtype)
    return _live_rows(_curves(s, b, with_e2=False)[0], s, 1, extra_axes=1)


def softmax_curves(scores: ArrayLike, betas: ArrayLike, where=None) -> SoftmaxCurves:
    """Entropy, p_max and participation sum p^2 on a beta grid, each of shape (..., B).

    `where` masks keys as in `entropy_curve`.
    """
    s = _check_scores(scores, where=where)
    b = _check_grid(betas, s.dtype)
    curves = _curves(s, b, with_e2=True)
    return SoftmaxCurves(*(_live_rows(c, s, 1, extra_axes=1) for c in curves))


# --------------------------------------------------------------------------------------
# Sorting (fast on CPU) and gap counting
# --------------------------------------------------------------------------------------


def _int_type(dtype):
    return {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[jnp.dtype(dtype).itemsize]


def _to_key(x):
    """Order-preserving map float -> signed int (valid for finite floats)."""
    it = _int_type(x.dtype)
    bits = lax.bitcast_convert_type(x, it)
    nbits = 8 * jnp.dtype(it).itemsize
    return bits ^ ((bits >> (nbits - 1)) & jnp.array(np.iinfo(it).max, it))


def _from_key(k, dtype):
    nbits = 8 * jnp.dtype(k.dtype).itemsize
    bits = k ^ ((k >> (nbits - 1)) & jnp.array(np.iinfo(k.dtype).max, k.dtype))
    return lax.bitcast_convert_type(bits, dtype)


def _host_sort(a: np.ndarray) -> np.ndarray:
    """np.sort along the last axis, rows split over threads (np.sort releases the GIL)."""
    a = np.asarray(a)
    rows = a.reshape(-1, a.shape[-1])
    workers = min(os.cpu_count() or 1, rows.shape[0], 8)
    if workers <= 1 or rows.size < (1 << 20):
        return np.sort(a, axis=-1)
    out = np.empty_like(rows)
    chunks = np.array_split(np.arange(rows.shape[0]), workers)

    def work(idx):
        out[idx] = np.sort(rows[idx], axis=-1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, chunks))
    return out.reshape(a.shape)


@jax.custom_jvp
def _sort(x):
    """Ascending sort along the last axis.

    On the CPU backend the values go to NumPy's sort through `jax.pure_callback` (XLA:CPU's
    sort is 10-15x slower than np.sort on float rows); elsewhere (GPU, TPU) XLA sorts
    order-preserving integer keys, which is faster than its float comparator. Differentiable
    (the tangent is permuted like the values).
    """
    if jax.default_backend() == "cpu":
        shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.pure_callback(_host_sort, shape, x, vmap_method="broadcast_all")
    keys = lax.sort(_to_key(x), dimension=x.ndim - 1, is_stable=False)
    return _from_key(keys, x.dtype)


@_sort.defjvp
def _sort_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    iota = lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    keys, perm = lax.sort((_to_key(x), iota), dimension=x.ndim - 1, num_keys=1, is_stable=True)
    return _from_key(keys, x.dtype), jnp.take_along_axis(dx, perm, axis=-1)


@jax.jit
def _sorted_gaps_core(s):
    """Sorted gaps of each row; masked (-inf) keys sort first in `asc` and become +inf gaps
    at the end (selected by `where`, so their cotangent is exactly zero: no inf - inf)."""
    asc = _sort(s)
    top = asc[..., -1:]
    real = (asc[..., :-1] > -jnp.inf) & (top > -jnp.inf)
    gaps = jnp.where(real, top - jnp.where(real, asc[..., :-1], 0.0), jnp.inf)
    return gaps[..., ::-1]


def sorted_gaps(scores: ArrayLike, where=None) -> Float[Array, "... n-1"]:
    """Sorted gaps Delta_(1) <= ... <= Delta_(n-1) of the n - 1 non-maximal scores.

    Shape (..., n - 1); O(n log n). With m scores tied at the maximum the first m - 1 gaps
    are 0. With masked keys (`where` False or score -inf; m live keys) the first m - 1
    entries are the gaps of the live keys and the remaining n - m are +inf ("absent"); a
    row with no live key is NaN.
    """
    s = _check_scores(scores, min_n=2, where=where)
    return _live_rows(_sorted_gaps_core(s), s, 1, extra_axes=1)


@jax.jit
def _gap_counts_core(s, t):
    gaps = _sorted_gaps_core(s)
    flat = gaps.reshape(-1, gaps.shape[-1])
    counts = jax.vmap(lambda g: jnp.searchsorted(g, t, side="right", method="scan"))(flat)
    # Masked keys have gap +inf; they must not count even at t = +inf.
    competitors = jnp.maximum(_live_count(s) - 1, 0).reshape(-1, *(1,) * t.ndim)
    counts = jnp.minimum(counts, competitors.astype(counts.dtype))
    return counts.reshape(*gaps.shape[:-1], *t.shape)


def gap_counts(scores: ArrayLike, t: ArrayLike, where=None) -> Int[Array, "..."]:
    """Gap-counting function N_n(t) = #{j != argmax : Delta_j <= t}.

    `t` is a scalar (returns shape (...,)) or a 1-D grid of thresholds (returns (..., T)).
    Ties at the maximum count as gaps 0 (only one argmax is excluded). O(n log n + T log n).
    Masked keys (`where` False, or score -inf) are not counted: N is that of the shorter row
    of the m live keys (so N = 0 for a row with m <= 1 live keys, which has no competitor).
    """
    s = _check_scores(scores, min_n=2, where=where)
    if not hasattr(t, "shape"):
        t = np.asarray(t)
    if t.ndim > 1:
        raise ValueError(f"`t` must be a scalar or a 1-D grid; got shape {tuple(t.shape)}.")
    tt = jnp.asarray(t, s.dtype)
    if _is_concrete(tt) and bool(jnp.any(jnp.isnan(tt))):
        raise ValueError("`t` contains NaN.")
    return _gap_counts_core(s, tt)


@functools.partial(jax.jit, static_argnames=())
def _soft_counts_core(s, t, temperature):
    delta, mask = _gaps_and_mask(s)

    def one(ti):
        sig = jax.nn.sigmoid((ti - delta) / temperature)
        return jnp.sum(jnp.where(mask, 0.0, sig), axis=-1)

    out = lax.map(one, t.reshape(-1))  # (T, ...)
    return jnp.moveaxis(out, 0, -1).reshape(*s.shape[:-1], *t.shape)


def soft_gap_counts(
    scores: ArrayLike, t: ArrayLike, temperature: ArrayLike, where=None
) -> Float[Array, "..."]:
    """Smooth counts sum_{j != argmax} sigmoid((t - Delta_j) / temperature).

    Tends to N_n(t) as temperature -> 0 (away from the jump points t = Delta_j); smooth in
    scores, t and temperature. `t` scalar or 1-D grid, as in `gap_counts`. Masked keys
    (`where` False, or -inf) contribute nothing (0 for a row with m <= 1 live keys).
    """
    s = _check_scores(scores, min_n=2, where=where)
    tt = jnp.asarray(t, s.dtype)
    if tt.ndim > 1:
        raise ValueError(f"`t` must be a scalar or a 1-D grid; got shape {tuple(tt.shape)}.")
    temp = _check_positive(temperature, s.dtype, "temperature")
    return _soft_counts_core(s, tt, temp)


# --------------------------------------------------------------------------------------
# Critical beta (hard and soft)
# --------------------------------------------------------------------------------------


def _log_ratio_terms(gaps, ties: str):
    """f_k = log k / Delta_(k), k = 1..n-1, with zero gaps handled per `ties`."""
    k = jnp.arange(1, gaps.shape[-1] + 1, dtype=gaps.dtype)
    logk = jnp.log(k)
    pos = (gaps > 0) & (gaps < jnp.inf)  # +inf gaps are masked keys: term 0
    f = jnp.where(pos, logk / jnp.where(pos, gaps, 1.0), 0.0)
    if ties == "inf":
        tied = gaps[..., :1] <= 0  # the maximum is attained more than once
        f = jnp.where(tied, jnp.inf, f)
    return f


@functools.partial(jax.jit, static_argnames=("ties",))
def _critical_beta_core(s, ties: str = "inf"):
    gaps = _sorted_gaps_core(s)
    return jnp.max(_log_ratio_terms(gaps, ties), axis=-1)


def _check_ties(ties: str) -> None:
    if ties not in ("inf", "ignore"):
        raise ValueError(f"`ties` must be 'inf' or 'ignore'; got {ties!r}.")


def critical_beta(scores: ArrayLike, where=None, *, ties: str = "inf") -> Float[Array, "..."]:
    """Candidate critical scale beta*_n = max_k log k / Delta_(k) = sup_t log N_n(t) / t.

    Shape (..., n) -> (...,); needs n >= 2 (for n = 2 the only term is log 1 / Delta = 0, so
    beta* = 0: one competitor is separated at any beta > 0 in the sense p_max > 1/2).
    O(n log n) (one sort per row).

    Ties at the top (Delta_(1) = 0, the maximum attained m >= 2 times): the row never becomes
    one-hot (H -> log m, p_max -> 1/m), so by default ``ties="inf"`` returns +inf.
    ``ties="ignore"`` drops the zero gaps from the maximum instead (k still counts them).
    Differentiable almost everywhere: d beta* = -(beta*/Delta_(k*)) d Delta_(k*).

    Masks: keys where the boolean `where` (broadcastable to the scores) is False, and keys
    whose score is -inf (e.g. a causal mask), are left out exactly as if the row were
    shorter: a row of m live keys gives beta*_m = max_{k <= m-1} log k / Delta_(k), with
    zero gradient on the masked keys. Rows with m < 2 live keys give NaN (documented
    choice: no competitor, no critical scale). NaN and +inf at live keys raise.
    """
    _check_ties(ties)
    s = _check_scores(scores, min_n=2, where=where)
    return _live_rows(_critical_beta_core(s, ties=ties), s, 2)


@functools.partial(jax.jit, static_argnames=("ties",))
def _soft_critical_beta_core(s, temperature, ties: str = "inf"):
    gaps = _sorted_gaps_core(s)
    f = _log_ratio_terms(gaps, ties)
    t = temperature[..., None]
    real = gaps < jnp.inf  # k <= m - 1: terms of the live keys only
    return temperature * jax.nn.logsumexp(jnp.where(real, f / t, 0.0), axis=-1, where=real)


def soft_critical_beta(
    scores: ArrayLike, temperature: ArrayLike, where=None, *, ties: str = "inf"
) -> Float[Array, "..."]:
    """Smooth surrogate of beta*_n: temperature * logsumexp_k(f_k / temperature).

    Here f_k = log k / Delta_(k), k = 1..n-1 (the terms whose hard maximum is beta*_n).

    `temperature` has the units of beta (scalar or one per row). Bounds:
    beta*_n <= soft <= beta*_n + temperature log(n - 1), so it recovers the hard value as
    temperature -> 0. Its gradient is the softmax(f / temperature)-weighted average of the
    gradients of the f_k (smooth except where sorted gaps cross).

    `where` masks keys as in `critical_beta` (the sum runs over k <= m - 1 for m live
    keys; rows with m < 2 give NaN).
    """
    _check_ties(ties)
    s = _check_scores(scores, min_n=2, where=where)
    temp = _check_positive(temperature, s.dtype, "temperature")
    _check_batch_broadcast(temp, s.shape[:-1], "temperature")
    temp = jnp.broadcast_to(temp, s.shape[:-1])
    return _live_rows(_soft_critical_beta_core(s, temp, ties=ties), s, 2)


# --------------------------------------------------------------------------------------
# Implicit scales
# --------------------------------------------------------------------------------------


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
    """
    s = _check_scores(scores, min_n=2, where=where)
    lv = _check_open_unit(level, s.dtype, "level")
    _check_batch_broadcast(lv, s.shape[:-1], "level")
    return _live_rows(_implicit_core("pmax", s, lv), s, 2)


def beta_at_pmax_half(scores: ArrayLike, where=None) -> Float[Array, "..."]:
    """The beta where p_max = 1/2 (the largest weight equals the sum of all others).

    For the planted simplex (one score 1, n - 1 scores rho) this is log(n - 1)/(1 - rho).
    `where` as in `beta_at_pmax`.
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
    """
    s = _check_scores(scores, min_n=2, where=where)
    th = _check_open_unit(theta, s.dtype, "theta")
    _check_batch_broadcast(th, s.shape[:-1], "theta")
    return _live_rows(_implicit_core("entropy", s, th), s, 2)


# --------------------------------------------------------------------------------------
# Score families and laws
# --------------------------------------------------------------------------------------


def _family_params(family: str, params: dict) -> dict:
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {sorted(FAMILIES)}; got {family!r}.")
    unknown = set(params) - set(FAMILIES[family])
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for family {family!r}; "
            f"it takes {sorted(FAMILIES[family])}."
        )
    out = {**FAMILIES[family], **params}
    for name in ("sigma", "p", "c"):
        if name in out and _is_concrete(out[name]) and not float(out[name]) > 0:
            raise ValueError(f"`{name}` must be > 0 for family {family!r}; got {out[name]!r}.")
    if family == "planted_simplex":
        rho, noise = out["rho"], out["noise"]
        if _is_concrete(rho) and not -1.0 < float(rho) < 1.0:
            raise ValueError(f"`rho` must lie in (-1, 1); got {rho!r}.")
        if _is_concrete(noise) and not float(noise) >= 0:
            raise ValueError(f"`noise` must be >= 0; got {noise!r}.")
    if family == "sphere_cosine":
        d = out["d"]
        if int(d) != d or int(d) < 2:
            raise ValueError(f"`d` must be an integer >= 2; got {d!r}.")
        out["d"] = int(d)
    return out


def _sphere_tail(d: int) -> tuple[float, float]:
    """(alpha, C) with P(1 - <q, x> <= u) ~ C u^alpha, x uniform on S^{d-1}.

    1 - <q, x> = 2 B with B ~ Beta(a, a), a = (d - 1)/2, and P(B <= v) ~ v^a / (a B(a, a)).
    """
    a = (d - 1) / 2
    log_beta_fn = 2 * math.lgamma(a) - math.lgamma(2 * a)
    return a, math.exp(-a * math.log(2) - math.log(a) - log_beta_fn)


@functools.lru_cache(maxsize=64)
def endpoint_law_constant(alpha: float, samples: int = 16384, terms: int = 2048) -> float:
    """Median of the limit law of beta*_n (n C)^(-1/alpha) for a power-law upper endpoint.

    If P(endpoint - s <= u) ~ C u^alpha (u -> 0), the top gaps satisfy
    (n C)^(1/alpha) (endpoint - s_(k)) -> Gamma_k^(1/alpha), Gamma_k = E_1 + ... + E_k
    (i.i.d. standard exponentials), so beta*_n (n C)^(-1/alpha) converges in law to
    S_alpha = max_k log k / (Gamma_{k+1}^(1/alpha) - Gamma_1^(1/alpha)), a non-degenerate random
    variable. Returns its median, by Monte Carlo with a fixed seed (deterministic; cached).
    Examples: alpha = 1/2 (d = 2 cosines) ~ 0.136, alpha = 1 (uniform scores, d = 3) ~ 0.515.
    For alpha -> inf it grows like alpha (the exponential-tail case, whose median is ~1.00).
    """
    rng = np.random.default_rng(20260512)
    out = []
    chunk = 1024
    logk = np.log(np.arange(1, terms + 1))
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        gam = np.cumsum(rng.exponential(size=(m, terms + 1)), axis=1) ** (1.0 / alpha)
        gaps = gam[:, 1:] - gam[:, :1]
        out.append(np.max(logk / gaps, axis=1))
    return float(np.median(np.concatenate(out)))


def predicted_critical_beta(family: str, n: ArrayLike, **params) -> Float[Array, "..."]:
    """Leading-order law of beta*_n for a score family (docs/design.md, section 3), shape of `n`.

    ====================  ==================================================================
    gaussian(sigma)       sqrt(2 log n) / sigma
    weibull(p, sigma)     (p / sigma) (log n)^(1 - 1/p) for p >= 1 (the table); for p < 1 the
                          sup in t is reached in the bulk and the law is (1/sigma)(log n)^(1-1/p),
                          so we return max(p, 1)/sigma (log n)^(1 - 1/p)
    planted_simplex(rho)  log n / (1 - rho)   (exact value log(n - 1)/(1 - rho) at noise = 0)
    finite_endpoint(c)    (log n)^2 / c
    sphere_cosine(d)      of order n^(2/(d-1)): kappa_a (C_d n)^(1/a), a = (d - 1)/2, with
                          C_d = 2^-a / (a B(a, a)) (P(1 - cos <= u) ~ C_d u^a) and
                          kappa_a = `endpoint_law_constant(a)`, the median of the limit law, so
                          that the median measured/predicted ratio tends to 1
    uniform(sigma)        of order n: kappa_1 n / sigma (same construction, a = 1, C = 1/sigma)
    gumbel(sigma)         of order 1: 1 / sigma (the tail hazard; the limit law of
    exponential(sigma)    beta*_n sigma has median ~1.00, by Monte Carlo)
    ====================  ==================================================================

    The laws are asymptotic: at finite n, measured/predicted ratios approach 1 slowly (in
    log n for the Gumbel-domain families), never exactly.
    """
    prm = _family_params(family, params)
    if not hasattr(n, "shape"):
        n = np.asarray(n)
    if _is_concrete(n) and np.any(np.asarray(n) < 2):
        raise ValueError(f"`n` must be >= 2 (number of keys); got {n!r}.")
    n = jnp.asarray(n, dtype=jnp.result_type(float))
    logn = jnp.log(n)
    if family == "gaussian":
        return jnp.sqrt(2 * logn) / prm["sigma"]
    if family == "weibull":
        p = prm["p"]
        return jnp.maximum(p, 1.0) / prm["sigma"] * logn ** (1 - 1 / p)
    if family == "planted_simplex":
        return logn / (1 - prm["rho"])
    if family == "finite_endpoint":
        return logn**2 / prm["c"]
    if family == "sphere_cosine":
        a, c = _sphere_tail(prm["d"])
        return endpoint_law_constant(a) * (c * n) ** (1 / a)
    if family == "uniform":
        return endpoint_law_constant(1.0) * n / prm["sigma"]
    # gumbel, exponential
    return jnp.ones_like(n) / prm["sigma"]


def sample_scores(
    family: str,
    key: PRNGKeyArray,
    n: int,
    rows: int | None = None,
    *,
    dtype=None,
    **params,
) -> Float[Array, "... n"]:
    """Sample score rows of a family: shape (n,) if rows is None, else (rows, n).

    ====================  ==================================================================
    gaussian(sigma=1)     i.i.d. N(0, sigma^2)
    weibull(p=2, sigma=1) sigma E^(1/p), E ~ Exp(1): tail P(s > x) = exp(-(x/sigma)^p)
    planted_simplex       one query against n equiangular keys (pairwise correlation rho), the
    (rho=0.5, noise=0)    query being one of them (Chen-Lin-Polyanskiy-Rigollet): one planted
                          score 1 at a random position, n - 1 scores rho + (1 - rho) noise xi,
                          xi ~ N(0, 1). At noise = 0, beta*_n = log(n - 1)/(1 - rho) exactly;
                          the law survives noise as long as noise^2 log n -> 0 (e.g. Gaussian
                          keys in dimension d >> log n, noise ~ 1/sqrt(d))
    finite_endpoint(c=1)  -c / E, E ~ Exp(1): top endpoint 0 with P(0 - s <= u) = exp(-c/u)
    sphere_cosine(d=3)    <q, x_j> - 1 for a query q and keys x_j uniform on S^{d-1}, returned
                          shifted by -1 (same softmax and gaps) and computed as
                          -|g_perp|^2 / (|g| (|g| + g_1)), g ~ N(0, I_d), to keep full relative
                          precision near the top (O(n d) normals)
    gumbel(sigma=1)       sigma * standard Gumbel
    exponential(sigma=1)  sigma * Exp(1)
    uniform(sigma=1)      -sigma U, U ~ U(0, 1) (top endpoint 0), with twice the mantissa bits
                          (U1 + eps U2) so that the top gaps ~ sigma/n are resolved in float32
    ====================  ==================================================================

    Tail-generated samples use uniforms with twice the mantissa bits (U1 + eps U2), so float32
    rows of n = 2^22 have no spurious ties at the top from the 2^-23 lattice of
    `jax.random.uniform` (which `jax.random.normal` and `exponential` inherit).
    """
    prm = _family_params(family, params)
    if int(n) != n or int(n) < 1:
        raise ValueError(f"`n` must be a positive integer; got {n!r}.")
    if rows is not None and (int(rows) != rows or int(rows) < 1):
        raise ValueError(f"`rows` must be None or a positive integer; got {rows!r}.")
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
    shape = (int(n),) if rows is None else (int(rows), int(n))
    return _sample(family, key, shape, dtype, tuple(sorted(prm.items())))


def _fine_uniform(key, shape, dtype):
    """U(0, 1) with twice the mantissa bits (U1 + eps U2), strictly positive.

    `jax.random.uniform` lives on a lattice of spacing eps (2^-23 in float32), which turns the
    top order statistics of tail-generated samples (e.g. -log U) into ties at large n.
    """
    k1, k2 = jr.split(key)
    eps = 2.0 ** -jnp.finfo(dtype).nmant
    u = jr.uniform(k1, shape, dtype) + eps * (jr.uniform(k2, shape, dtype) + 0.5 * eps)
    return jnp.minimum(u, 1.0 - 0.5 * eps)


def _fine_exponential(key, shape, dtype):
    """Exp(1) resolved in the upper tail: -log U with a fine uniform U."""
    return -jnp.log(_fine_uniform(key, shape, dtype))


def _fine_normal(key, shape, dtype):
    """N(0, 1) resolved in both tails: random sign times -ndtri(U / 2), fine uniform U."""
    k1, k2 = jr.split(key)
    mag = -jax.scipy.special.ndtri(0.5 * _fine_uniform(k1, shape, dtype))
    return jnp.where(jr.bernoulli(k2, 0.5, shape), mag, -mag)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _sample(family, key, shape, dtype, items):
    prm = dict(items)
    if family == "gaussian":
        return prm["sigma"] * _fine_normal(key, shape, dtype)
    if family == "weibull":
        return prm["sigma"] * _fine_exponential(key, shape, dtype) ** (1.0 / prm["p"])
    if family == "planted_simplex":
        k1, k2 = jr.split(key)
        rho = prm["rho"]
        s = rho + (1 - rho) * prm["noise"] * _fine_normal(k1, shape, dtype)
        planted = jr.randint(k2, shape[:-1], 0, shape[-1])
        hit = jnp.arange(shape[-1]) == planted[..., None]
        return jnp.where(hit, jnp.ones((), dtype), s)
    if family == "finite_endpoint":
        return -prm["c"] / _fine_exponential(key, shape, dtype)
    if family == "sphere_cosine":
        # x = g / |g|, g ~ N(0, I_d): 1 - x_1 = |g_perp|^2 / (|g| (|g| + g_1)), no cancellation
        # near the top x_1 -> 1.
        k1, k2 = jr.split(key)
        g1 = jr.normal(k1, shape, dtype)
        perp2 = jnp.zeros(shape, dtype)
        for ki in jr.split(k2, prm["d"] - 1):
            perp2 = perp2 + jr.normal(ki, shape, dtype) ** 2
        norm = jnp.sqrt(g1**2 + perp2)
        top = g1 >= 0
        near = perp2 / (norm * jnp.where(top, norm + g1, 1.0))
        return -jnp.where(top, near, 1.0 - g1 / norm)
    if family == "gumbel":
        # -log E, E = -log1p(-U) ~ Exp(1): the top (E -> 0) is resolved by a fine U -> 0.
        e = -jnp.log1p(-_fine_uniform(key, shape, dtype))
        return -prm["sigma"] * jnp.log(e)
    if family == "exponential":
        return prm["sigma"] * _fine_exponential(key, shape, dtype)
    if family == "uniform":
        return -prm["sigma"] * _fine_uniform(key, shape, dtype)
    raise AssertionError(family)  # pragma: no cover


# --------------------------------------------------------------------------------------
# Bridge to particle systems
# --------------------------------------------------------------------------------------


def _check_particles(X, name: str = "X") -> Array:
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d); got shape {tuple(X.shape)}.")
    if X.shape[0] < 3:
        raise ValueError(
            f"`{name}` needs at least 3 particles (2 keys per query); got {X.shape[0]}."
        )
    X = jnp.asarray(X, dtype=_float_dtype(X))
    if _is_concrete(X):
        if not bool(jnp.all(jnp.isfinite(X))):
            raise ValueError(f"`{name}` contains NaN or inf.")
        err = float(jnp.max(jnp.abs(jnp.linalg.norm(X, axis=-1) - 1)))
        tol = math.sqrt(float(jnp.finfo(X.dtype).eps))
        if err > tol:
            raise ValueError(
                f"`{name}` rows must lie on the unit sphere: "
                f"max | |x_i| - 1 | = {err:.3g} > {tol:.2g}."
            )
    return X


def _drop_diagonal(G, rows):
    """Remove entry (i, rows_i) from each row of G (b, n) -> (b, n - 1)."""
    n = G.shape[-1]
    j = jnp.arange(n - 1)[None, :]
    idx = j + (j >= rows[:, None])
    return jnp.take_along_axis(G, idx, axis=-1)


@functools.partial(jax.jit, static_argnames=("include_self",))
def _score_rows_core(X, beta, include_self: bool):
    G = beta * (X @ X.T)
    if include_self:
        return G
    return _drop_diagonal(G, jnp.arange(X.shape[0]))


def score_rows(X: ArrayLike, beta: ArrayLike = 1.0, *, include_self: bool = False):
    """Per-query score rows beta <x_i, x_j> of particles X (n, d) on the unit sphere.

    Returns (n, n - 1) with the self-score excluded (default; the self-score beta is always
    the maximum and would hide the competition between the other keys, whose critical scale
    follows the n^(2/(d-1)) law), or (n, n) with ``include_self=True``. Dense: O(n^2) memory;
    use `critical_beta_of_particles` for large n.
    """
    X = _check_particles(X)
    b = _check_nonneg(beta, X.dtype, "beta")
    if b.ndim:
        raise ValueError("`beta` must be a scalar here.")
    return _score_rows_core(X, b, include_self)


@functools.partial(jax.jit, static_argnames=("include_self", "block", "ties"))
def _particles_core(X, include_self: bool, block: int, ties: str):
    n = X.shape[0]
    nblocks = -(-n // block)
    pad = nblocks * block - n
    idx = jnp.concatenate([jnp.arange(n), jnp.zeros((pad,), jnp.int32)]).reshape(nblocks, block)

    def one(rows):
        G = X[rows] @ X.T  # (block, n)
        if not include_self:
            G = _drop_diagonal(G, rows)
        return _critical_beta_core(G, ties=ties)

    return lax.map(one, idx).reshape(-1)[:n]


def critical_beta_of_particles(
    X: ArrayLike, *, include_self: bool = False, block: int = 256, ties: str = "inf"
) -> Float[Array, " n"]:
    """beta*_n of every query row of the scores <x_i, x_j> of particles X (n, d).

    Processed in blocks of `block` queries (memory O(block n)); self-scores excluded by
    default (see `score_rows`), so each query sees n - 1 keys. For X uniform on S^{d-1} the
    median over queries follows ``predicted_critical_beta("sphere_cosine", n - 1, d=d)``.
    """
    _check_ties(ties)
    X = _check_particles(X)
    return _particles_core(X, include_self, int(min(block, X.shape[0])), ties)
