"""Symmetric kernel: self-attention that computes each pair's exponential once.

For Q = K = V = X the scores are symmetric. With the half-norms h_i = beta |x_i|^2 / 2,

    w_j exp(beta <x_i, x_j>) = e^{h_i + M} E_ij u_j,
    E_ij = exp(beta <x_i, x_j> - h_i - h_j) = exp(-beta |x_i - x_j|^2 / 2),
    u_j = exp(log w_j + h_j - M),   M = max_j (log w_j + h_j),

where E is symmetric with entries in (0, 1] (1 on the diagonal) and u in [0, 1]. With
U = [u x, u] (n, d + 1), the sums A = E U hold the weighted sums and, in the last column,
the row sums s_i, and

    L_i = h_i + M + log s_i,      Y_i = (sum_j E_ij u_j x_j) / s_i.

The rows are cut into nb blocks of `block`. The strip of block I holds the tiles E_IJ of
its own block and the nb // 2 blocks that follow it cyclically (J = I, ..., I + nb // 2
mod nb), so that every unordered pair of blocks is owned once (weights 1/2 where it is met
twice: the diagonal tile, and for even nb the pair at offset nb / 2). One tile serves both
sides:

    A_I += E_IJ U_J,      A_J += E_IJ^T U_I   (accumulated transposed, as U_I^T E_IJ):

at most n (n + 2 block) / 2 exponentials instead of n^2, and no running maximum (the
exponent is bounded). A strip is visited in even pieces of at most `chunk` columns, so
memory is O(n d + block chunk).

No running maximum means a row whose sum leaves the normal range is lost: a zero-mass
particle far from every massive one at large beta (s_i below n * tiny / eps, where flushed
subnormal terms could cost relative precision), or a sum that overflows (E > 1 when
beta < 0). Then the whole call is recomputed by `Tiled` (one `lax.cond` on the concrete
outcome; `batched_tangent_stats` decides once for the whole batch), so the answer is always
the exact one.

`stats` for arbitrary (Q, K, V) is the tiled computation. On the GPU the sequential scan
over strips is the wrong shape (`select_kernel` picks it on the CPU only).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..sphere import project
from ._base import (
    AbstractKernel,
    Stats,
    accumulation_dtype,
    bounded_sums_exact,
    check_block_sizes,
    check_precision,
    dot_nn,
    dot_nt,
    pad_rows,
)
from .tiled import Tiled

# On a 2-core AMD EPYC, 256-row strips were the fastest of 128 / 256 / 512 / 1024 at
# n = 4096 and 16384, d = 3 and 64 (larger tiles fall out of the 1 MB L2).
BLOCK = 256
CHUNK = 4096


class Symmetric(AbstractKernel):
    """Self-attention with one exponential per unordered pair (see the module docstring);
    cross-attention statistics are `Tiled`'s.

    **Arguments:**

    - `block`: rows per strip.
    - `chunk`: at most this many key columns per tile (rounded up to a multiple of `block`).
    - `precision`: "highest" (default), "high" or "default" for float32 products.
    """

    name: ClassVar[str] = "symmetric"
    block: int = BLOCK
    chunk: int = CHUNK
    precision: str = "highest"

    def __check_init__(self):
        check_block_sizes(self, "block", "chunk")
        check_precision(self.precision)

    def _tiled(self) -> Tiled:
        return Tiled(precision=self.precision)

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        return self._tiled().stats(Q, K, V, beta, log_w)

    def _symmetric_sums(self, X, beta, log_w, with_values: bool):
        """(L, Y, ok): the statistics of the module docstring (Y is None without values)
        and whether every row sum is safely inside the normal range."""
        n, d = X.shape
        acc = accumulation_dtype(X.dtype)
        Xa = X.astype(acc)
        beta = jnp.asarray(beta, acc)
        log_w = log_w.astype(acc)
        b = min(self.block, n)
        h = 0.5 * beta * jnp.sum(Xa * Xa, axis=1)
        g = log_w + h
        M = jnp.max(g)
        M = jnp.where(jnp.isfinite(M), M, 0.0)
        u = jnp.exp(g - M)
        U = jnp.concatenate([u[:, None] * Xa, u[:, None]], axis=1) if with_values else u[:, None]
        e = U.shape[1]
        # Padded rows carry u = 0: they add nothing to any sum and are dropped at the end.
        Xp, hp, Up = pad_rows(Xa, b), pad_rows(h, b), pad_rows(U, b)
        N = Xp.shape[0]
        nb = N // b
        precision = self.precision

        def tile(xi, hi, xk, hk):
            return jnp.exp(beta * dot_nt(xi, xk, precision, acc) - hi[:, None] - hk[None, :])

        half = nb // 2
        width = (half + 1) * b
        # The strip's half + 1 blocks in even pieces of at most `chunk` columns (rounded up
        # to whole blocks): w columns each.
        per_piece = max(1, -(-self.chunk // b))
        pieces = -(-(half + 1) // per_piece)
        w = -(-(half + 1) // pieces) * b
        # Column weights of the strip of block I (blocks I, ..., I + nb // 2): 1/2 on its own
        # (diagonal) block, which the strip meets twice (E_II U_I and U_I^T E_II); 1/2 on
        # the block at offset nb / 2 for even nb (owned by two strips); 0 on the padding up
        # to whole pieces; 1 elsewhere.
        c = np.zeros(pieces * w)
        c[:width] = 1.0
        c[:b] = 0.5
        if nb % 2 == 0 and half:
            c[width - b : width] = 0.5
        c = jnp.asarray(c.reshape(pieces, w), acc)
        # Keys of the strip of block I start at row I b of X repeated twice; the zero rows
        # behind keep the last piece in range.
        tail = pieces * w
        Xk = jnp.concatenate([Xp, Xp, jnp.zeros((tail, d), acc)])
        hk = jnp.concatenate([hp, hp, jnp.zeros((tail,), acc)])
        Uk = jnp.concatenate([Up, Up, jnp.zeros((tail, e), acc)])

        def strip(At, blk):
            i, xi, hi, ui = blk

            def piece(carry, t):
                At, ai = carry
                start = i * b + t * w
                xk = lax.dynamic_slice_in_dim(Xk, start, w)
                E = tile(xi, hi, xk, lax.dynamic_slice_in_dim(hk, start, w)) * c[t][None, :]
                ai = ai + dot_nn(E, lax.dynamic_slice_in_dim(Uk, start, w), precision, acc)
                at = lax.dynamic_slice_in_dim(At, start, w, axis=1) + dot_nn(
                    ui.T, E, precision, acc
                )
                return (lax.dynamic_update_slice_in_dim(At, at, start, axis=1), ai), None

            (At, ai), _ = lax.scan(piece, (At, jnp.zeros((b, e), acc)), jnp.arange(pieces))
            return At, ai

        blocks = (jnp.arange(nb), Xp.reshape(nb, b, d), hp.reshape(nb, b), Up.reshape(nb, b, e))
        At, Ai = lax.scan(strip, jnp.zeros((e, Xk.shape[0]), acc), blocks)
        A = Ai.reshape(N, e) + (At[:, :N] + At[:, N : 2 * N]).T
        A = A[:n]
        s = A[:, -1]
        ok = bounded_sums_exact(s, log_w)
        Y = A[:, :d] / s[:, None] if with_values else None
        return h + M + jnp.log(s), Y, ok

    def tangent_stats(self, X, beta, log_w) -> Stats:
        L, T = self.batched_tangent_stats(X[None], beta, log_w)
        return Stats(L[0], T[0])

    def log_interaction(self, X, beta, log_w):
        L, _, ok = self._symmetric_sums(X, beta, log_w, False)
        L = lax.cond(
            ok,
            lambda _: L,
            lambda _: self._tiled().log_sums(X, X, beta, log_w).astype(L.dtype),
            None,
        )
        return jax.nn.logsumexp(L + log_w.astype(L.dtype))

    def batched_tangent_stats(self, Xs, beta, log_w) -> Stats:
        """Every system in one pass; one `lax.cond` for the whole batch (a vmapped cond
        would run both branches), so a single system goes through here too."""
        beta = jnp.broadcast_to(beta, Xs.shape[:1])
        sums = jax.vmap(lambda X, b: self._symmetric_sums(X, b, log_w, True))
        L, Y, ok = sums(Xs, beta)
        Y = Y.astype(Xs.dtype)

        def exact(_):
            tiled = self._tiled()
            L1, Y1 = jax.vmap(lambda X, b: tiled.stats(X, X, X, b, log_w))(Xs, beta)
            return L1.astype(L.dtype), Y1

        L, Y = lax.cond(jnp.all(ok), lambda _: (L, Y), exact, None)
        return Stats(L, project(Xs, Y))
