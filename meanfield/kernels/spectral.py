"""Spectral kernel: sums over S^1 and S^2 by harmonic expansion, O(n K) or O(n L^2).

exp(beta <x, y>) is expanded in Fourier modes (circle) or spherical harmonics (S^2) and
truncated at the smallest order whose error bound (relative to e^beta, the largest kernel
value) is below `tol` (see `_harmonics.py` for the expansions, Bessel values and bounds).
With masses w_j = e^{log w_j} and f(x) = sum_j w_j exp(beta <x, k_j>):

    L_i = log f(q_i),    P_{q_i} Y_i = grad_S f(q_i) / (beta f(q_i)),
    <q_i, Y_i> = d L_i / d beta          (the radial part, by forward-mode autodiff)

The values must be the keys themselves (V = K): the expansion sums exp(beta <q, k_j>)
and its gradient, which is what velocities and energies need; queries may be any points
on the sphere. The approximation error is the claim: the contract test checks it against
Dense at loose tolerances too. A traced beta needs an explicit `order` (the order is a
static part of the program; choose it for the largest beta of a sweep).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from .._validation import is_concrete
from ._base import AbstractKernel, KernelError, Stats, is_low_precision
from ._harmonics import spectral_log_interaction, spectral_order, spectral_sums


class Spectral(AbstractKernel):
    """Harmonic-expansion sums on S^1 (d = 2) and S^2 (d = 3).

    **Arguments:**

    - `tol`: error tolerance relative to e^beta (floor about 1e-13 in float64).
    - `order`: truncation order K (circle) / degree L (S^2); None: the smallest order
      meeting `tol`, fixed by `prepare` for the dimension.
    - `at_beta`: the inverse temperature the order is chosen for when `order` is None
      (default: the concrete beta passed to `prepare`); set it to the largest beta of a
      sweep so that a traced beta works.
    """

    name: ClassVar[str] = "spectral"
    supports_values: ClassVar[bool] = False
    dims: ClassVar[tuple[int, ...]] = (2, 3)
    exact: ClassVar[bool] = False
    tol: float = 1e-12
    order: int | None = None
    at_beta: float | None = None

    def __check_init__(self):
        if not (isinstance(self.tol, float | int) and self.tol > 0 and self.tol < float("inf")):
            raise KernelError(f"`spectral_tol` must be > 0; got {self.tol!r}.")
        if self.order is not None and (
            isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 1
        ):
            raise KernelError(f"`spectral_order` must be a positive integer; got {self.order!r}.")

    def check(self, nq, d, dtype, *, nk=None, e=None):
        super().check(nq, d, dtype, nk=nk, e=e)
        if is_low_precision(dtype):
            raise KernelError(
                f"{self!r} needs float32 or float64 points (its Bessel and harmonic "
                f"recurrences lose all accuracy in {jnp.dtype(dtype)})."
            )

    def prepare(self, nq, d, dtype, *, beta=None, nk=None):
        self.check(nq, d, dtype, nk=nk)
        if self.order is not None:
            return self
        if self.at_beta is not None:
            beta = self.at_beta
        if beta is None or not is_concrete(beta):
            raise KernelError(
                f"{self!r} with a traced beta needs an explicit `order` or `at_beta` (choose "
                "it for the largest beta of the sweep: meanfield.spectral_order(beta, d, tol))."
            )
        return Spectral(self.tol, spectral_order(float(beta), d, self.tol))

    def _order(self):
        if self.order is None:
            raise KernelError(f"{self!r} has no order yet: call prepare(n, d, dtype, beta=...).")
        return self.order

    def _sums(self, Q, K, beta, log_w):
        m = jnp.exp(log_w.astype(Q.dtype))
        return spectral_sums(Q, K, m, jnp.asarray(beta, Q.dtype), self._order())

    def log_sums(self, Q, K, beta, log_w):
        f, _ = self._sums(Q, K, beta, log_w)
        return jnp.asarray(beta, Q.dtype) + jnp.log(f)

    def tangent_stats(self, X, beta, log_w) -> Stats:
        f, grad = self._sums(X, X, beta, log_w)
        beta = jnp.asarray(beta, X.dtype)
        return Stats(beta + jnp.log(f), grad / (beta * f[:, None]))

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        if V is not K:
            raise KernelError(
                f"{self!r} sums exp(beta <q, k_j>) k_j: the values must be the keys "
                "(V = K, the same array); use Dense or Tiled for cross-attention values."
            )
        beta = jnp.asarray(beta, Q.dtype)
        f, grad = self._sums(Q, K, beta, log_w)
        L_of_beta = lambda b: b + jnp.log(self._sums(Q, K, b, log_w)[0])
        L, radial = jax.jvp(L_of_beta, (beta,), (jnp.ones_like(beta),))
        return Stats(L, grad / (beta * f[:, None]) + radial[:, None] * Q)

    def log_interaction(self, X, beta, log_w):
        """log sum_ij w_i w_j exp(beta <x_i, x_j>) from the moments alone."""
        m = jnp.exp(log_w.astype(X.dtype))
        return spectral_log_interaction(X, m, jnp.asarray(beta, X.dtype), self._order())
