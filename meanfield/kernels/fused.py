"""Fused kernel: self-attention statistics in one native pass per row block (CPU).

For S systems of n points in R^d (d <= 8), with h_i = beta |x_i|^2 / 2 and
M = max_j (log w_j + h_j), the native loop (`fused.cc`, an XLA FFI call) computes

    t_ij = beta <x_i, x_j> - h_i + log w_j - M
         = -beta |x_i - x_j|^2 / 2 + (log w_j + h_j - M)  <= 0   (beta >= 0),
    s_i = sum_j e^{t_ij},   A_i = sum_j e^{t_ij} x_j,

with the rows on the vector lanes and the keys a scalar loop, so that the scores, the
exponential and both sums of a row block stay in registers: nothing of size n^2 is
written, every exponential is computed once, and no running maximum is needed. Then

    L_i = h_i + M + log s_i,   Y_i = A_i / s_i,   T_i = P_{x_i} Y_i.

The exponential is a polynomial on the reduced argument (1 ulp in float32, a few ulp in
float64). As in `Symmetric`, a row sum outside the normal range (a zero-mass particle far
from all mass at large beta, or overflow at very negative beta) sends the whole call to
`Tiled` through one `lax.cond`, so the result is always the exact one.

Derivatives (jvp, vjp, Hessians) are those of the `Tiled` computation (a `custom_jvp`): the
native loop runs the forward pass only. float32 and float64 run natively; float16 and
bfloat16 are accumulated in float32. Cross-attention `stats` is `Tiled`'s.

The loop is compiled with the machine's C++ compiler on first use (about 10 s, then
cached; `native.py`). Where that is impossible `check` says why and "auto" picks the
pure-JAX kernels instead.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from ..sphere import project
from . import native
from ._base import AbstractKernel, KernelError, Stats, accumulation_dtype, bounded_sums_exact
from .tiled import Tiled

#: Largest d the native loop is compiled for.
MAX_DIM = 8


def _exact(X, beta, log_w, layout: int):
    """(L, Y) by `Tiled`, in the layout of the native call."""
    tiled = Tiled()
    if layout == 1:
        X = jnp.transpose(X, (2, 1, 0))
    L, Y = jax.vmap(lambda x, b: tiled.stats(x, x, x, b, log_w))(X, beta)
    L = L.astype(X.dtype)
    if layout == 1:
        return L.T, jnp.transpose(Y, (2, 1, 0))
    return L, Y


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _fused_sums(X, beta, log_w, layout: int):
    """(L, Y) of S systems: X (S, n, d) (layout 0) or (d, n, S) (layout 1), beta (S,),
    log_w (n,), all in float32 or float64 (module docstring)."""
    C, s, A = native.self_sums(X, beta, log_w, layout)
    # rows on the last axis of s in layout 0, on the middle one (n, S) in layout 1
    ok = bounded_sums_exact(s if layout == 0 else s.T, log_w)

    def exact():  # the same three outputs: shifts L, unit sums, means Y
        L, Y = _exact(X, beta, log_w, layout)
        return L, jnp.ones_like(s), Y

    # L and Y are formed after the cond, so that an unused L (SA) costs no logarithm.
    C, s, A = lax.cond(ok, lambda: (C, s, A), exact)
    return C + jnp.log(s), A / (s[..., None] if layout == 0 else s[None])


@_fused_sums.defjvp
def _fused_sums_jvp(layout, primals, tangents):
    return jax.jvp(lambda X, b, w: _exact(X, b, w, layout), primals, tangents)


class Fused(AbstractKernel):
    """Self-attention statistics by the native fused loop (see the module docstring);
    points in R^d with d <= 8; cross-attention statistics are `Tiled`'s.

    Built for the CPU: on other backends `check` refuses it.
    """

    name: ClassVar[str] = "fused"
    max_dim: ClassVar[int | None] = MAX_DIM

    def check(self, nq: int, d: int, dtype, *, nk: int | None = None, e: int | None = None):
        super().check(nq, d, dtype, nk=nk, e=e)
        if jax.default_backend() != "cpu":
            raise KernelError(f"{self!r} runs on the CPU only; use Flash or Tiled here.")
        ok, why = native.status()
        if not ok:
            raise KernelError(f"{self!r} needs its native loop, unavailable here: {why}.")

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        return Tiled().stats(Q, K, V, beta, log_w)

    def _sums(self, X, beta, log_w, layout: int):
        acc = accumulation_dtype(X.dtype)
        S = X.shape[0] if layout == 0 else X.shape[-1]
        beta = jnp.broadcast_to(jnp.asarray(beta, acc), (S,))
        return _fused_sums(X.astype(acc), beta, log_w.astype(acc), layout)

    def tangent_stats(self, X, beta, log_w) -> Stats:
        L, T = self.batched_tangent_stats(X[None], beta, log_w)
        return Stats(L[0], T[0])

    def log_interaction(self, X, beta, log_w):
        L, _ = self._sums(X[None], beta, log_w, 0)
        return jax.nn.logsumexp(L[0] + log_w.astype(L.dtype))

    def batched_tangent_stats(self, Xs, beta, log_w) -> Stats:
        """Xs (S, n, d), beta (S,), log_w (n,) -> Stats(L (S, n), T (S, n, d)), one native
        call for the whole batch."""
        L, Y = self._sums(Xs, beta, log_w, 0)
        return Stats(L, project(Xs, Y.astype(Xs.dtype)))

    def lanes_tangent_stats(self, XP, beta, log_w) -> Stats:
        """The lanes layout (an ensemble's state, see `Lanes`): XP (d, n, S), beta (S,),
        log_w (n,) -> Stats(L (n, S), T (d, n, S)), without transposes."""
        L, Y = self._sums(XP, beta, log_w, 1)
        return Stats(L, project(XP.astype(L.dtype), Y, axis=0).astype(XP.dtype))
