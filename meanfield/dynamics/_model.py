"""The `MeanField` model: attention dynamics of particles on the sphere.

With s = +1 (attractive) or -1 (repulsive) and an optional perceptron drift u:

    USA:      dx_i/dt = s P_{x_i} sum_j m_j exp(beta <x_i, x_j>) x_j + u(x_i)
    SA:       dx_i/dt = s P_{x_i} sum_j softmax_j(beta <x_i, x_j> + log m_j) x_j + u(x_i)
    general:  dx_i/dt = P_{x_i}(V sum_j w_ij x_j) + P_{x_i}(W sigma(A x_i + b)),
              w_ij = softmax_j(beta <B x_i, x_j> + log m_j)   (weights="softmax")
              w_ij = m_j exp(beta <B x_i, x_j>)               (weights="exp")

USA is the Wasserstein gradient ascent of the energy F_s (see `_energy.py`):
velocity_i = grad_S phi_mu(x_i), phi_mu(x) = (s / beta) sum_j m_j K_beta(x, x_j) + v(x)/2.
"""

from __future__ import annotations

import copy

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import (
    check_masses,
    check_points,
    check_positive_scalar,
    check_sign,
    is_concrete,
)
from ..kernels import AbstractKernel, Spectral, log_masses, max_exponent, resolve_kernel
from ..kernels._base import accumulation_dtype
from ..kernels.select import kernel_from
from ..sphere import project
from ._energy import perceptron_energy, safe_exp
from ._perceptron import Perceptron, activation_functions, check_perceptron

ATTENTIONS = ("usa", "sa", "general")


class MLP(eqx.Module):
    """Non-conservative perceptron drift u(x) = P_x(W sigma(A x + b)).

    **Arguments:** `W` (d, k), `A` (k, d), `b` (k,), `activation` (as for `Perceptron`).

    Used with `attention="general"` (no energy: the drift is not a gradient). A
    `Perceptron` is the special case W = A^T diag(omega).
    """

    W: Float[Array, "d k"]
    A: Float[Array, "k d"]
    b: Float[Array, " k"]
    activation: str = eqx.field(static=True, default="relu")

    def __init__(self, W, A, b, activation: str = "relu"):
        activation_functions(activation)
        A = jnp.asarray(A)
        W = jnp.asarray(W, dtype=A.dtype)
        b = jnp.asarray(b, dtype=A.dtype)
        if A.ndim != 2:
            raise ValueError(f"`A` must have shape (k, d); got {A.shape}.")
        k, d = A.shape
        if W.shape != (d, k):
            raise ValueError(f"`W` must have shape ({d}, {k}) to match `A`; got {W.shape}.")
        if b.shape != (k,):
            raise ValueError(f"`b` must have shape ({k},) to match `A`; got {b.shape}.")
        self.W, self.A, self.b, self.activation = W, A, b, activation

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    def drift(self, X: Float[Array, "... d"]) -> Float[Array, "... d"]:
        sigma, _ = activation_functions(self.activation)
        return project(X, sigma(X @ self.A.T + self.b) @ self.W.T)


def _as_float(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


class MeanField(eqx.Module):
    """Interacting particles on S^{d-1} under (self-)attention.

    **Arguments:**

    - `beta`: inverse temperature, > 0 (a traced array leaf: sweeps do not recompile).
    - `sign`: +1 attractive (V = I) or -1 repulsive (V = -I).
    - `attention`: "usa" (unnormalised, exact gradient ascent of F_s), "sa" (softmax, the
      dynamics of real transformers) or "general" (arbitrary V, B, weights).
    - `perceptron`: optional `Perceptron` (conservative drift u = P grad v / 2) or, for
      attention="general" only, an `MLP`.
    - `kernel`: how the pairwise sums are computed: "auto" (`kernels.select_kernel`, by
      backend, dtype, n, d and beta, resolved once by every entry point), a name of
      `kernels.REGISTRY` ("dense", "tiled", "fused", "symmetric", "lanes", "centred",
      "spectral", "attention", "flash", "ring") or a kernel instance such as
      `kernels.Tiled(1024, 1024)`.
    - `shift_kernel`: use K = exp(beta(<x, y> - 1)) (the convention of the perceptron
      paper's code): weakens the interaction by e^{-beta} relative to the perceptron.
    - `rescaled_time`: multiply the whole velocity by e^{-beta}; the same trajectories on a
      clock slowed by e^{beta}, finite for any beta.
    - `value`, `query_key`, `weights`: for attention="general": V (d, d) (default
      sign * I), B (d, d) (default I), and "softmax" or "exp" attention weights.
    - `spectral_tol`: error tolerance of the spectral kernel (relative to e^beta, the
      largest kernel value; floor about 1e-13 in float64). Default 1e-12.
    - `spectral_order`: truncation order K (d = 2) / degree L (d = 3) for
      kernel="spectral"; by default the smallest order whose error bound is <=
      spectral_tol at this beta (for a sweep over beta, build the model at the largest).

    The model never branches on the kernel: velocities use `kernel.tangent_stats` (USA,
    SA) or `kernel.stats` (general), energies `kernel.log_interaction` and
    `kernel.log_sums`.
    """

    beta: Array
    sign: Array
    attention: str = eqx.field(static=True)
    perceptron: Perceptron | MLP | None
    kernel: AbstractKernel | str = eqx.field(static=True)
    shift_kernel: bool = eqx.field(static=True)
    rescaled_time: bool = eqx.field(static=True)
    value: Array | None
    query_key: Array | None
    weights: str = eqx.field(static=True)
    spectral_tol: float = eqx.field(static=True)

    def __init__(
        self,
        beta,
        sign=1,
        attention: str = "usa",
        perceptron=None,
        kernel="auto",
        *,
        shift_kernel: bool = False,
        rescaled_time: bool = False,
        value=None,
        query_key=None,
        weights: str = "softmax",
        spectral_tol: float = 1e-12,
        spectral_order: int | None = None,
    ):
        check_positive_scalar(beta, "beta")
        check_sign(sign)
        if attention not in ATTENTIONS:
            raise ValueError(f"`attention` must be one of {ATTENTIONS}; got {attention!r}.")
        if weights not in ("softmax", "exp"):
            raise ValueError(f"`weights` must be 'softmax' or 'exp'; got {weights!r}.")
        if attention != "general":
            if value is not None or query_key is not None:
                raise ValueError("`value` and `query_key` need attention='general'.")
            if isinstance(perceptron, MLP):
                raise ValueError("A non-conservative `MLP` drift needs attention='general'.")
        if perceptron is not None and not isinstance(perceptron, (Perceptron, MLP)):
            raise ValueError(
                f"`perceptron` must be a Perceptron, an MLP or None; got {type(perceptron)}."
            )
        for name, mat in (("value", value), ("query_key", query_key)):
            if mat is not None and (np.ndim(mat) != 2 or np.shape(mat)[0] != np.shape(mat)[1]):
                raise ValueError(
                    f"`{name}` must be a square (d, d) matrix; got shape {np.shape(mat)}."
                )
        spectral_tol = float(spectral_tol)
        if not spectral_tol > 0 or not np.isfinite(spectral_tol):
            raise ValueError(f"`spectral_tol` must be > 0; got {spectral_tol}.")
        if kernel == "spectral":
            kernel = Spectral(spectral_tol, spectral_order)
        kernel = kernel_from(kernel)
        if isinstance(kernel, Spectral):
            if attention == "general":
                raise ValueError("kernel='spectral' supports attention='usa' and 'sa' only.")
            if kernel.order is None and kernel.at_beta is None:
                if not is_concrete(beta):
                    raise ValueError(
                        "kernel='spectral' with a traced beta needs an explicit `spectral_order`."
                    )
                # The order is chosen for this beta (a sweep builds the model at its largest).
                kernel = Spectral(kernel.tol, None, float(beta))
                for d in kernel.dims:  # raises now if the order exceeds the budget
                    kernel.prepare(1, d, jnp.float64)
        self.beta = _as_float(beta)
        self.sign = _as_float(sign)
        self.attention = attention
        self.perceptron = perceptron
        self.kernel = kernel
        self.shift_kernel = bool(shift_kernel)
        self.rescaled_time = bool(rescaled_time)
        self.value = None if value is None else jnp.asarray(value)
        self.query_key = None if query_key is None else jnp.asarray(query_key)
        self.weights = weights
        self.spectral_tol = spectral_tol

    # ---------------------------------------------------------------- kernels
    @property
    def self_interaction(self) -> bool:
        """Queries, keys and values are the particles themselves (USA and SA)."""
        return self.attention != "general"

    def with_kernel(self, kernel) -> MeanField:
        """A copy of this model with another kernel (an instance, a name or "auto")."""
        new = copy.copy(self)
        object.__setattr__(new, "kernel", kernel_from(kernel))
        return new

    def select(self, n: int, d: int, *, dtype=None, batch: int = 1, nq: int | None = None):
        """The concrete, checked kernel for n particles in R^d (and nq queries, default n).

        "auto" goes to `kernels.select_kernel` with this model's beta (when concrete),
        dtype and batch size; a kernel instance is checked and prepared (e.g. a Spectral
        order fixed from beta). Raises a ValueError naming the kernel and the reason when
        the kernel cannot do it.
        """
        dtype = jnp.result_type(float) if dtype is None else dtype
        beta = float(self.beta) if is_concrete(self.beta) else None
        if self.attention == "general" and isinstance(self.kernel, Spectral):
            raise ValueError("kernel='spectral' supports attention='usa' and 'sa' only.")
        kernel = resolve_kernel(
            self.kernel,
            n if nq is None else nq,
            d,
            dtype=dtype,
            beta=beta,
            batch=batch,
            nk=n,
            self_interaction=self.self_interaction,
            spectral_tol=self.spectral_tol,
        )
        return kernel

    def resolve_kernel(self, n: int, d: int, *, dtype=None, batch: int = 1) -> MeanField:
        """This model with its kernel resolved for n points in R^d (`select`); entry points
        (velocity, energy, integrate, ensemble, critical points, the CLI) call it once,
        outside jit, so that the compiled program holds a concrete kernel."""
        return self.with_kernel(self.select(n, d, dtype=dtype, batch=batch))

    def _kernel(self, X, nq: int | None = None) -> AbstractKernel:
        """The kernel for the points X inside a computation (resolved at trace time if the
        model was not resolved by its entry point)."""
        if isinstance(self.kernel, AbstractKernel) and not isinstance(self.kernel, Spectral):
            return self.kernel
        return self.select(X.shape[0], X.shape[1], dtype=X.dtype, nq=nq)

    # ---------------------------------------------------------------- validation
    def check_inputs(self, X, m=None, name: str = "X"):
        """Validate (X, m) against this model; return them as arrays (m uniform if None)."""
        X = check_points(X, name)
        d = X.shape[1]
        if self.perceptron is not None:
            if isinstance(self.perceptron, Perceptron):
                check_perceptron(self.perceptron, d)
            elif self.perceptron.dim != d:
                raise ValueError(
                    f"`perceptron` acts on R^{self.perceptron.dim}, points are in R^{d}."
                )
        for mat_name, mat in (("value", self.value), ("query_key", self.query_key)):
            if mat is not None and mat.shape != (d, d):
                raise ValueError(f"`{mat_name}` must have shape ({d}, {d}); got {mat.shape}.")
        m = check_masses(m, X.shape[0], X.dtype)
        return X, m

    @property
    def unnormalised(self) -> bool:
        """The interaction is a kernel sum (USA, or general with exp weights), not a mean."""
        return self.attention == "usa" or (self.attention == "general" and self.weights == "exp")

    def check_representable(self, dtype):
        """Raise if e^{beta} (the USA velocity scale) overflows `dtype` and nothing rescales it."""
        rescaled = self.rescaled_time or self.shift_kernel
        if self.unnormalised and not rescaled and is_concrete(self.beta):
            limit = max_exponent(dtype)
            if float(self.beta) > limit:
                raise ValueError(
                    f"`beta`={float(self.beta):.4g} makes exp(beta) overflow "
                    f"{jnp.dtype(dtype)} (limit beta < {limit:.1f}). Use rescaled_time=True "
                    "(same trajectories, clock rescaled by e^beta)"
                    + (" or float64." if jnp.dtype(dtype) != jnp.float64 else ".")
                )

    def max_log_speed(self, dtype) -> float | None:
        """An upper bound of log max_i |dx_i/dt| from the interaction (None if beta is
        traced): beta for USA (shifted: 0) plus the time rescaling; 0 for SA."""
        if not is_concrete(self.beta):
            return None
        beta = float(self.beta)
        log_speed = beta if self.unnormalised else 0.0
        if self.unnormalised and self.shift_kernel:
            log_speed -= beta
        if self.rescaled_time:
            log_speed -= beta
        return log_speed

    # ---------------------------------------------------------------- dynamics
    def _log_time_scale(self, dtype):
        return -self.beta.astype(dtype) if self.rescaled_time else jnp.zeros((), dtype)

    def _velocity(self, X: Float[Array, "n d"], m: Float[Array, " n"]) -> Float[Array, "n d"]:
        """Velocity without input checks (X may be slightly off the sphere in RK4 stages)."""
        kernel = self._kernel(X)
        acc = accumulation_dtype(X.dtype)
        beta = self.beta.astype(acc)
        log_m = log_masses(m.astype(acc))
        if self.self_interaction:
            L, T = kernel.tangent_stats(X, beta, log_m)
            direction = self.sign.astype(acc) * T.astype(acc)
        else:
            Q = X if self.query_key is None else X @ self.query_key.astype(X.dtype)
            L, Y = kernel.stats(Q, X, X, beta, log_m)
            Y = Y.astype(acc)
            if self.value is None:
                direction = self.sign.astype(acc) * project(X.astype(acc), Y)
            else:
                direction = project(X.astype(acc), Y @ self.value.astype(acc).T)
        return self._velocity_from_direction(X, L, direction)

    def batched_velocity(self, Xs: Float[Array, "S n d"], m, betas=None) -> Array:
        """Velocities of S independent systems at once, without input checks (an
        ensemble's step): Xs (S, n, d), masses m (n,) shared, betas (S,) one inverse
        temperature per system (default: this model's beta for all).

        The kernel computes the batch in one pass (`batched_tangent_stats`; `Lanes` puts
        the systems on the vector lanes); the rest is per system. **Returns:** (S, n, d).
        """
        S = Xs.shape[0]
        betas = jnp.broadcast_to(self.beta if betas is None else betas, (S,))
        at = lambda b: eqx.tree_at(lambda mdl: mdl.beta, self, b.astype(self.beta.dtype))
        if not self.self_interaction:
            return jax.vmap(lambda b, X: at(b)._velocity(X, m))(betas, Xs)
        kernel = self._kernel(Xs[0])
        acc = accumulation_dtype(Xs.dtype)
        L, T = kernel.batched_tangent_stats(Xs, betas.astype(acc), log_masses(m.astype(acc)))
        sign = self.sign.astype(acc)
        return jax.vmap(
            lambda b, X, L, T: at(b)._velocity_from_direction(X, L, sign * T.astype(acc))
        )(betas, Xs, L, T)

    def has_lanes_path(self) -> bool:
        """Whether `lanes_velocity` runs in the lanes layout without transposes: a
        self-interaction without perceptron whose kernel has `lanes_tangent_stats`."""
        return (
            self.self_interaction
            and self.perceptron is None
            and hasattr(self.kernel, "lanes_tangent_stats")
        )

    def lanes_velocity(self, XP: Float[Array, "d n S"], m, betas) -> Array:
        """`batched_velocity` in the lanes layout: XP (d, n, S) coordinate planes of S
        systems, m (n,) shared masses, betas (S,). **Returns:** (d, n, S).

        With `has_lanes_path()` the kernel works on the planes directly; otherwise the
        systems are transposed to (S, n, d) and back around `batched_velocity`.
        """
        if not self.has_lanes_path():
            V = self.batched_velocity(jnp.transpose(XP, (2, 1, 0)), m, betas)
            return jnp.transpose(V, (2, 1, 0))
        acc = accumulation_dtype(XP.dtype)
        betas = jnp.broadcast_to(betas, XP.shape[-1:]).astype(acc)
        L, T = self.kernel.lanes_tangent_stats(XP, betas, log_masses(m.astype(acc)))
        log_time = -betas if self.rescaled_time else jnp.zeros_like(betas)
        direction = self.sign.astype(acc) * T.astype(acc)
        if self.unnormalised:  # e^{L} times the time rescaling, per particle and system
            log_scale = L.astype(acc) + log_time - (betas if self.shift_kernel else 0.0)
        else:
            log_scale = jnp.broadcast_to(log_time, L.shape)
        return (jnp.exp(log_scale)[None] * direction).astype(XP.dtype)

    def _velocity_from_direction(self, X, L, direction) -> Float[Array, "n d"]:
        """Velocity from the row log-normalisers L and the tangent interaction direction:
        USA scales it by e^{L} (the kernel sum), SA keeps the softmax mean; then the time
        rescaling and the perceptron drift."""
        acc = direction.dtype
        log_time = self._log_time_scale(acc)
        if self.unnormalised:
            shift = self.beta.astype(acc) if self.shift_kernel else 0.0
            v = jnp.exp(L.astype(acc) + log_time - shift)[:, None] * direction
        else:
            v = jnp.exp(log_time) * direction
        if self.perceptron is not None:
            v = v + jnp.exp(log_time) * self.perceptron.drift(X.astype(acc))
        return v.astype(X.dtype)

    def velocity(self, X: Float[Array, "n d"], m: Float[Array, " n"] | None = None) -> Array:
        """dX/dt at X, shape (n, d); tangent to the sphere at every row.

        **Arguments:** `X` (n, d) points on the sphere; `m` (n,) masses (default uniform).

        **Returns:** the velocity (n, d).
        """
        X, m = self.check_inputs(X, m)
        self.check_representable(X.dtype)
        return self.resolve_kernel(*X.shape, dtype=X.dtype)._velocity(X, m)

    def vector_field(self, t, X: Float[Array, "n d"], args=None) -> Float[Array, "n d"]:
        """f(t, X, args) in the diffrax convention; args = masses m (n,) or None (uniform)."""
        m = args if args is not None else jnp.full((X.shape[0],), 1.0 / X.shape[0], X.dtype)
        return self._velocity(X, m)

    # ---------------------------------------------------------------- energy
    def require_energy(self) -> None:
        """Raise a ValueError unless the energy F_s is defined: attention "usa" or "sa"
        (V = s I, B = I). The general system (arbitrary V, B, or an `MLP` drift, which
        needs it) is not a gradient flow. The one rule the energies and critical points use."""
        if self.attention == "general":
            raise ValueError(
                "The energy F_s is defined for attention='usa' or 'sa' (V = s I, B = I); the "
                "general system (arbitrary V, B or an MLP drift) is not a gradient flow and "
                "has no energy."
            )

    def log_kernel_shift(self, dtype) -> Array:
        """log of the kernel's constant factor: -beta with `shift_kernel=True` (K = e^{beta
        (<x, y> - 1)}), 0 otherwise (K = e^{beta <x, y>}). Returns a scalar of `dtype`."""
        return -self.beta.astype(dtype) if self.shift_kernel else jnp.zeros((), dtype)

    def log_interaction(self, X, m=None) -> Array:
        """log iint K_beta dmu dmu (with the model's kernel convention); always finite."""
        self.require_energy()
        X, m = self.check_inputs(X, m)
        acc = accumulation_dtype(X.dtype)
        kernel = self._kernel(X)
        log_i = kernel.log_interaction(X, self.beta.astype(acc), log_masses(m.astype(acc)))
        return log_i + self.log_kernel_shift(acc)

    def log_energy(self, X, m=None) -> Array:
        """log |interaction part of F_s| = log iint K dmu dmu - log(2 beta).

        F_s = sign * exp(log_energy) + perceptron_energy; finite for any beta.
        """
        log_i = self.log_interaction(X, m)
        return log_i - jnp.log(2 * self.beta.astype(log_i.dtype))

    def perceptron_energy(self, X, m=None) -> Array:
        """(1/2) int v dmu."""
        self.require_energy()
        X, m = self.check_inputs(X, m)
        return perceptron_energy(X, m, self.perceptron)

    def energy(self, X: Float[Array, "n d"], m: Float[Array, " n"] | None = None) -> Array:
        """F_s[mu] = (s / (2 beta)) iint K_beta dmu dmu + (1/2) int v dmu (scalar).

        Raises a clear error when the value overflows its dtype (use `log_energy` or
        `rescaled_energy` then).
        """
        log_e = self.log_energy(X, m)
        inter = safe_exp(log_e, "interaction energy")
        return self.sign.astype(inter.dtype) * inter + self.perceptron_energy(X, m)

    def rescaled_energy(self, X, m=None) -> Array:
        """e^{-beta} F_s: the Lyapunov function of the `rescaled_time` flow; finite for any beta."""
        log_e = self.log_energy(X, m)
        beta = self.beta.astype(log_e.dtype)
        inter = jnp.exp(log_e - beta)
        return self.sign.astype(inter.dtype) * inter + jnp.exp(-beta) * self.perceptron_energy(X, m)

    def lyapunov(self, X, m=None) -> Array:
        """The function the USA flow of this model ascends: F_s, or e^{-beta} F_s if rescaled."""
        return self.rescaled_energy(X, m) if self.rescaled_time else self.energy(X, m)

    def first_variation(self, Y: Float[Array, "p d"], X: Float[Array, "n d"], m=None) -> Array:
        """phi_mu(y) = (s / beta) sum_j m_j K_beta(y, x_j) + v(y) / 2 at each row of Y; (p,)."""
        self.require_energy()
        X, m = self.check_inputs(X, m)
        Y = check_points(Y, "Y", d=X.shape[1])
        acc = accumulation_dtype(X.dtype)
        beta = self.beta.astype(acc)
        log_scale = self.log_kernel_shift(acc) - jnp.log(beta)
        kernel = self._kernel(X, nq=Y.shape[0])
        L = kernel.log_sums(Y, X, beta, log_masses(m.astype(acc)))
        out = self.sign.astype(acc) * jnp.exp(L + log_scale)
        if self.perceptron is not None:
            out = out + 0.5 * self.perceptron.potential(Y)
        return out
