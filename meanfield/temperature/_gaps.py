"""Gap counting and the candidate critical scale of score rows:

    N_n(t) = #{j != argmax : Delta_j <= t},
    beta*_n = sup_t log N_n(t) / t = max_k log k / Delta_(k),

with sorted gaps Delta_(1) <= ... <= Delta_(n-1), and their smoothed versions
(`soft_gap_counts`, `soft_critical_beta`) for gradients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from .._validation import check_batch_broadcast, check_positive, check_scores, check_ties
from .._validation import is_concrete as _is_concrete
from ._softmax import _gaps_and_mask, _live_count, _live_rows
from ._sort import _sort, host_critical_beta


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

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** an array of shape (..., n - 1), ascending along the last axis (a row with
    one live key is all +inf).

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast.
    """
    s = check_scores(scores, min_n=2, where=where)
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

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `t`: threshold(s), a scalar or a 1-D grid (T,) (cast to the dtype of the scores).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** integer counts, shape ``scores.shape[:-1]`` for a scalar `t`, else
    ``scores.shape[:-1] + (T,)``.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast, or if `t` has
    more than one dimension or (concrete) contains NaN.
    """
    s = check_scores(scores, min_n=2, where=where)
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

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `t`: threshold(s), a scalar or a 1-D grid (T,) (cast to the dtype of the scores).
    - `temperature`: smoothing width in the units of the gaps, finite and > 0; a scalar
        (it is broadcast against the keys axis, not per row).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.

    **Returns:** float counts in [0, m - 1], shape ``scores.shape[:-1]`` for a scalar `t`,
    else ``scores.shape[:-1] + (T,)``.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast, if `t` has
    more than one dimension, or if `temperature` is not finite and > 0.
    """
    s = check_scores(scores, min_n=2, where=where)
    tt = jnp.asarray(t, s.dtype)
    if tt.ndim > 1:
        raise ValueError(f"`t` must be a scalar or a 1-D grid; got shape {tuple(tt.shape)}.")
    temp = check_positive(temperature, s.dtype, "temperature")
    return _soft_counts_core(s, tt, temp)


def _log_ratio_terms(gaps, ties: str):
    """f_k = log k / Delta_(k), k = 1..n-1, with zero gaps handled per `ties`."""
    logk = _log_k(gaps.shape[-1] + 1, gaps.dtype)
    pos = (gaps > 0) & (gaps < jnp.inf)  # +inf gaps are masked keys: term 0
    f = jnp.where(pos, logk / jnp.where(pos, gaps, 1.0), 0.0)
    if ties == "inf":
        tied = gaps[..., :1] <= 0  # the maximum is attained more than once
        f = jnp.where(tied, jnp.inf, f)
    return f


def _log_k(n: int, dtype):
    """log 1, ..., log(n - 1) in `dtype`: the numerators of the terms f_k."""
    return jnp.log(jnp.arange(1, n, dtype=dtype))


def _critical_beta_reference(s, ties: str):
    gaps = _sorted_gaps_core(s)
    return jnp.max(_log_ratio_terms(gaps, ties), axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _critical_beta_fast(s, ties: str):
    """beta*_n of each row. On the CPU backend the sort and the reduction run on the host
    (`host_critical_beta`: only one value per row crosses back, not the sorted rows, which
    was 2/3 of the time at 1024 x 65536); elsewhere, and for derivatives, the device
    formula."""
    if jax.default_backend() != "cpu":
        return _critical_beta_reference(s, ties)
    logk = _log_k(s.shape[-1], s.dtype)
    shape = jax.ShapeDtypeStruct(s.shape[:-1], s.dtype)
    host = functools.partial(host_critical_beta, ties=ties)
    return jax.pure_callback(host, shape, s, logk, vmap_method="broadcast_all")


@_critical_beta_fast.defjvp
def _critical_beta_fast_jvp(ties, primals, tangents):
    return jax.jvp(lambda s: _critical_beta_reference(s, ties), primals, tangents)


@functools.partial(jax.jit, static_argnames=("ties",))
def _critical_beta_core(s, ties: str = "inf"):
    return _critical_beta_fast(s, ties)


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

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.
    - `ties`: "inf" (default) or "ignore", the treatment of a maximum attained >= 2 times.

    **Returns:** beta*_n >= 0, shape ``scores.shape[:-1]`` (+inf for tied rows with
    ``ties="inf"``, NaN for rows with fewer than 2 live keys).

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast, or if `ties`
    is not "inf" or "ignore".
    """
    check_ties(ties)
    s = check_scores(scores, min_n=2, where=where)
    if _is_concrete(s) and jax.default_backend() == "cpu":
        # Called eagerly: the host computes it directly. Through the callback inside a
        # compiled program the same work ran 1.7x slower (XLA's idle threads share the cores).
        logk = np.asarray(_log_k(s.shape[-1], s.dtype))
        return jnp.asarray(host_critical_beta(np.asarray(s), logk, ties))
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

    **Arguments:**

    - `scores`: (..., n) score rows, n >= 2; finite, or -inf for a masked key.
    - `temperature`: finite and > 0, a scalar or one per row (broadcastable to
        ``scores.shape[:-1]``).
    - `where`: optional boolean array broadcastable to `scores`; False masks a key.
    - `ties`: "inf" (default) or "ignore", as in `critical_beta`.

    **Returns:** the smoothed scale, shape ``scores.shape[:-1]``.

    **Raises:** `ValueError` (eagerly; `equinox.error_if` under jit) if `scores` has n < 2
    or NaN or +inf at a live key, if `where` is not boolean or does not broadcast, if `ties` is
    not "inf" or "ignore", or if `temperature` is not finite and > 0 or does not broadcast
    to the batch shape.
    """
    check_ties(ties)
    s = check_scores(scores, min_n=2, where=where)
    temp = check_positive(temperature, s.dtype, "temperature")
    check_batch_broadcast(temp, s.shape[:-1], "temperature")
    temp = jnp.broadcast_to(temp, s.shape[:-1])
    return _live_rows(_soft_critical_beta_core(s, temp, ties=ties), s, 2)
