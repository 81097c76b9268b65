"""Sorting score rows on the host (a backend concern, isolated here).

XLA's sort of many long rows is slow on CPU; `_sort` sends the rows to NumPy through
`jax.pure_callback` (a thread pool over rows), with a custom JVP (the sort permutation
applied to the tangents) so gradients flow; `host_critical_beta` sorts and reduces the rows
there in one pass, so only beta*_n per row comes back. Floats are mapped to order-preserving
integers and back (`_to_key`, `_from_key`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


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


#: Rows per host task of `host_critical_beta` (about 1M scores: cache- and memory-friendly).
_TASK_ELEMENTS = 1 << 20


def host_critical_beta(a: np.ndarray, logk: np.ndarray, ties: str) -> np.ndarray:
    """max_k log k / Delta_(k) of each row of `a` (..., n), computed on the host.

    The rows are sorted and reduced in tasks of about a million scores over a thread pool
    (np.sort releases the GIL), so only (...,) values come back instead of the sorted rows.
    `logk` (n - 1,) is log 1 .. log(n - 1) as the device computed it (the same rounding as
    the device formula). Same semantics as the device core: masked (-inf) keys have +inf
    gaps and term 0; with `ties="inf"` a row whose maximum is attained twice gives +inf;
    a row with fewer than two live keys gives NaN (as `_live_rows` makes it on the device).
    """
    a = np.asarray(a)
    n = a.shape[-1]
    rows = a.reshape(-1, n)
    out = np.empty(rows.shape[0], a.dtype)
    step = max(1, _TASK_ELEMENTS // n)

    def work(start):
        asc = np.sort(rows[start : start + step], axis=-1)
        top = asc[:, -1:]
        rest = asc[:, -2::-1]  # the other keys, largest first: gap k is top - rest[k - 1]
        with np.errstate(invalid="ignore"):
            gaps = top - rest  # masked keys: +inf (NaN in rows with no live key, set below)
        pos = (gaps > 0) & (gaps < np.inf)
        terms = np.zeros_like(gaps)
        np.divide(logk, gaps, out=terms, where=pos)
        best = terms.max(axis=-1)
        if ties == "inf":
            best[gaps[:, 0] <= 0] = np.inf
        best[~(asc[:, -2] > -np.inf)] = np.nan  # fewer than 2 live keys: no critical scale
        out[start : start + step] = best

    starts = range(0, rows.shape[0], step)
    workers = min(os.cpu_count() or 1, len(starts), 8)
    if workers <= 1:
        for start in starts:
            work(start)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, starts))
    return out.reshape(a.shape[:-1])


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
