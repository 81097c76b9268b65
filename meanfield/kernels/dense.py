"""Dense kernel: materialise the (nq, nk) score matrix.

    S_ij = beta <q_i, k_j> + log w_j,   M_i = max_j S_ij,
    L_i = M_i + log sum_j e^{S_ij - M_i},   Y_i = sum_j e^{S_ij - M_i} v_j / sum_j e^{S_ij - M_i}

Fastest for small problems and for ensembles of many tiny systems (vmapped), and the
reference every other kernel is tested against. Memory O(nq nk).
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from ._base import (
    AbstractKernel,
    KernelError,
    Stats,
    accumulation_dtype,
    check_precision,
    dot_nn,
    dot_nt,
)

#: Largest d for which broadcast scores also take the broadcast form for Y.
SMALL_D = 4
SCORE_FORMS = ("auto", "matmul", "broadcast")


class Dense(AbstractKernel):
    """(L, Y) from the full score matrix.

    **Arguments:**

    - `scores`: "matmul" (Q @ K^T), "broadcast" (sum_d q_d k_d written as a broadcast,
      which XLA:CPU fuses with the exponential; it blows up XLA:GPU's compile time), or
      "auto" (= "matmul"). On one 2-core EPYC the broadcast form ran vmapped n = 32,
      d = 2 systems 1.8x faster; on another (with AVX-512, same jax) it was 2.5-15x
      slower than matmul at every size tried, so it is no longer the default.
    - `precision`: "highest" (default), "high" or "default" for float32 products.
    """

    name: ClassVar[str] = "dense"
    scores: str = "auto"
    precision: str = "highest"

    def __check_init__(self):
        if self.scores not in SCORE_FORMS:
            raise KernelError(f"Dense `scores` must be one of {SCORE_FORMS}; got {self.scores!r}.")
        check_precision(self.precision)

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        dtype = jnp.result_type(Q, K, V)
        acc = accumulation_dtype(dtype)
        broadcast = self.scores == "broadcast"
        if broadcast:
            G = jnp.sum(Q.astype(acc)[:, None, :] * K.astype(acc)[None, :, :], axis=-1)
        else:
            G = dot_nt(Q.astype(dtype), K.astype(dtype), self.precision, acc)
        S = jnp.asarray(beta, acc) * G + log_w.astype(acc)[None, :]
        # A finite floor keeps rows whose keys all have weight zero from giving inf - inf.
        M = jnp.maximum(jnp.max(S, axis=1), jnp.finfo(acc).min)
        P = jnp.exp(S - M[:, None])
        total = jnp.sum(P, axis=1)
        if broadcast and V.shape[1] <= SMALL_D:
            Y = jnp.sum(P[:, :, None] * V.astype(acc)[None, :, :], axis=1)
        else:
            Y = dot_nn(P, V.astype(acc), self.precision, acc)
        return Stats(M + jnp.log(total), (Y / total[:, None]).astype(dtype))
