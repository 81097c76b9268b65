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

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._energy import kernel_first_variation, log_interaction, perceptron_energy, safe_exp
from ._kernels import KERNELS, attention_stats, log_masses, max_exponent
from ._perceptron import Perceptron, activation_functions, check_perceptron
from ._spectral import spectral_log_interaction, spectral_order, spectral_sums
from ._sphere import project
from ._validation import (
    check_masses,
    check_points,
    check_positive_scalar,
    check_sign,
    is_concrete,
)

ATTENTIONS = ("usa", "sa", "general")


class MLP(eqx.Module):
    """Non-conservative perceptron drift P_x(W sigma(A x + b)): W (d, k), A (k, d), b (k,).

    Used with `attention="general"`. A `Perceptron` is the special case W = A^T diag(omega).
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

    Arguments:
        beta: inverse temperature, > 0 (a traced array leaf: sweeps do not recompile).
        sign: +1 attractive (V = I) or -1 repulsive (V = -I).
        attention: "usa" (unnormalised, exact gradient ascent of F_s), "sa" (softmax, the
            dynamics of real transformers) or "general" (arbitrary V, B, weights).
        perceptron: optional `Perceptron` (conservative drift u = P grad v / 2) or, for
            attention="general" only, an `MLP`.
        kernel: "auto" | "dense" | "tiled" | "spectral" | "attention" (pairwise-sum
            implementation; "attention": jax.nn.dot_product_attention, `_attention_gpu`).
        shift_kernel: use K = exp(beta(<x, y> - 1)) (the convention of the perceptron
            paper's code): weakens the interaction by e^{-beta} relative to the perceptron.
        rescaled_time: multiply the whole velocity by e^{-beta}; the same trajectories on a
            clock slowed by e^{beta}, finite for any beta.
        value, query_key, weights: for attention="general": V (d, d) (default sign * I),
            B (d, d) (default I), and "softmax" or "exp" attention weights.
        spectral_tol: error tolerance of the spectral kernel (relative to e^beta, the
            largest kernel value; floor about 1e-13 in float64). Default 1e-12.
        spectral_order: truncation order K (d = 2) / degree L (d = 3) for the spectral
            kernel; by default the smallest order whose error bound is <= spectral_tol at
            this beta (for a sweep over beta, build the model at the largest beta).

    kernel="auto" uses the spectral kernel on S^1 and S^2 when it is much cheaper than the
    pairwise sum (n >= 16 (K + 1) on the circle, n >= 8 (L + 1)^2 on S^2, and n >= 16384),
    otherwise dense (small n) or tiled.
    """

    beta: Array
    sign: Array
    attention: str = eqx.field(static=True)
    perceptron: Perceptron | MLP | None
    kernel: str = eqx.field(static=True)
    shift_kernel: bool = eqx.field(static=True)
    rescaled_time: bool = eqx.field(static=True)
    value: Array | None
    query_key: Array | None
    weights: str = eqx.field(static=True)
    spectral_tol: float = eqx.field(static=True)
    spectral_orders: tuple | None = eqx.field(static=True)

    def __init__(
        self,
        beta,
        sign=1,
        attention: str = "usa",
        perceptron=None,
        kernel: str = "auto",
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
        if kernel not in KERNELS:
            raise ValueError(f"`kernel` must be one of {KERNELS}; got {kernel!r}.")
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
        self.spectral_tol = float(spectral_tol)
        self.spectral_orders = self._spectral_orders(kernel, attention, spectral_order)

    def _spectral_orders(self, kernel, attention, order):
        """(K for S^1, L for S^2) for kernel="spectral", fixed at construction so that beta
        can stay traced; None otherwise ("auto" decides in `resolve_kernel`)."""
        if order is not None:
            if isinstance(order, bool) or not isinstance(order, int) or order < 1:
                raise ValueError(f"`spectral_order` must be a positive integer; got {order!r}.")
            return (order, order)
        if not self.spectral_tol > 0 or not np.isfinite(self.spectral_tol):
            raise ValueError(f"`spectral_tol` must be > 0; got {self.spectral_tol}.")
        if kernel != "spectral":
            return None
        if not is_concrete(self.beta):
            raise ValueError(
                "kernel='spectral' with a traced beta needs an explicit `spectral_order`."
            )
        return tuple(spectral_order(float(self.beta), d, self.spectral_tol) for d in (2, 3))

    def resolve_kernel(self, n: int, d: int) -> MeanField:
        """This model with kernel="auto" resolved for n points in R^d.

        Returns a spectral copy when the spectral sum is much cheaper than the pairwise one
        (d = 2 or 3, n >= 16384 and n >= 16 (K + 1) on S^1 or 8 (L + 1)^2 on S^2, with the
        order rounded up to a power of two so that nearby betas share one compilation);
        otherwise the model itself (dense below 512^2 pairs, tiled above). Entry points
        (velocity, energy, integrate, ensemble) call it before compiling.
        """
        if (
            self.kernel != "auto"
            or self.attention == "general"
            or d not in (2, 3)
            or n < 16384
            or not is_concrete(self.beta)
        ):
            return self
        try:
            order = spectral_order(float(self.beta), d, self.spectral_tol)
        except ValueError:
            return self
        order = max(16, 1 << (order - 1).bit_length())
        cost = 16 * (order + 1) if d == 2 else 8 * (order + 1) ** 2
        if n < cost:
            return self
        return MeanField(
            self.beta,
            self.sign,
            self.attention,
            self.perceptron,
            "spectral",
            shift_kernel=self.shift_kernel,
            rescaled_time=self.rescaled_time,
            spectral_tol=self.spectral_tol,
            spectral_order=order,
        )

    def _implementation(self, n: int, d: int) -> str:
        """'spectral', or the pairwise kernel name passed on to attention_stats."""
        if self.kernel == "spectral":
            if d not in (2, 3):
                raise ValueError(
                    f"kernel='spectral' needs points on S^1 or S^2 (d = 2 or 3); got d = {d}. "
                    "Use kernel='tiled' in higher dimensions."
                )
            if self.attention == "general":
                raise ValueError("kernel='spectral' supports attention='usa' and 'sa' only.")
            return "spectral"
        return self.kernel

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

    def check_representable(self, dtype):
        """Raise if e^{beta} (the USA velocity scale) overflows `dtype` and nothing rescales it."""
        needs_exp = self.attention == "usa" or (
            self.attention == "general" and self.weights == "exp"
        )
        if needs_exp and not (self.rescaled_time or self.shift_kernel) and is_concrete(self.beta):
            limit = max_exponent(dtype)
            if float(self.beta) > limit:
                raise ValueError(
                    f"`beta`={float(self.beta):.4g} makes exp(beta) overflow {jnp.dtype(dtype)} "
                    f"(limit beta < {limit:.1f}). Use rescaled_time=True (same trajectories, "
                    "clock rescaled by e^beta)"
                    + (" or float64." if jnp.dtype(dtype) != jnp.float64 else ".")
                )

    # ---------------------------------------------------------------- dynamics
    def _log_time_scale(self, dtype):
        return -self.beta.astype(dtype) if self.rescaled_time else jnp.zeros((), dtype)

    def _velocity(self, X: Float[Array, "n d"], m: Float[Array, " n"]) -> Float[Array, "n d"]:
        """Velocity without input checks (X may be slightly off the sphere in RK4 stages)."""
        dtype = X.dtype
        if self._implementation(*X.shape) == "spectral":
            return self._spectral_velocity(X, m)
        Q = X if self.query_key is None else X @ self.query_key.astype(dtype)
        beta = self.beta.astype(dtype)
        L, Y = attention_stats(Q, X, X, beta, log_masses(m.astype(dtype)), self.kernel)
        return self._velocity_from_stats(X, L, Y)

    def _velocity_from_stats(self, X: Float[Array, "n d"], L, Y) -> Float[Array, "n d"]:
        """Row-wise velocity from the attention statistics (L, Y) of the rows X.

        Shared by the single-device path and the particle-sharded ring (`_sharding.py`).
        """
        dtype = X.dtype
        beta = self.beta.astype(dtype)
        log_time = self._log_time_scale(dtype)
        unnormalised = self.attention == "usa" or (
            self.attention == "general" and self.weights == "exp"
        )
        if unnormalised:
            log_scale = L + log_time - (beta if self.shift_kernel else 0.0)
            Y = jnp.exp(log_scale)[:, None] * Y
        else:
            Y = jnp.exp(log_time) * Y
        if self.value is None:
            v = self.sign.astype(dtype) * project(X, Y)
        else:
            v = project(X, Y @ self.value.astype(dtype).T)
        if self.perceptron is not None:
            v = v + jnp.exp(log_time) * self.perceptron.drift(X)
        return v

    def _spectral_velocity(self, X, m):
        """USA: s e^{beta + log scales} grad_S f~ / beta; SA: s grad_S f~ / (beta f~),
        with f~ = e^{-beta} sum_j m_j exp(beta <x, x_j>) from `_spectral`."""
        dtype = X.dtype
        beta = self.beta.astype(dtype)
        log_time = self._log_time_scale(dtype)
        order = self.spectral_orders[X.shape[1] - 2]
        f, grad = spectral_sums(X, X, m.astype(dtype), beta, order)
        if self.attention == "usa":
            log_scale = beta + log_time + self._log_kernel_shift(dtype)
            v = jnp.exp(log_scale) * grad / beta
        else:
            v = jnp.exp(log_time) * grad / (beta * f[:, None])
        v = self.sign.astype(dtype) * v
        if self.perceptron is not None:
            v = v + jnp.exp(log_time) * self.perceptron.drift(X)
        return v

    def velocity(self, X: Float[Array, "n d"], m: Float[Array, " n"] | None = None) -> Array:
        """dX/dt at X, shape (n, d); tangent to the sphere at every row."""
        X, m = self.check_inputs(X, m)
        self.check_representable(X.dtype)
        return self.resolve_kernel(*X.shape)._velocity(X, m)

    def vector_field(self, t, X: Float[Array, "n d"], args=None) -> Float[Array, "n d"]:
        """f(t, X, args) in the diffrax convention; args = masses m (n,) or None (uniform)."""
        m = args if args is not None else jnp.full((X.shape[0],), 1.0 / X.shape[0], X.dtype)
        return self._velocity(X, m)

    # ---------------------------------------------------------------- energy
    def _require_energy(self):
        if self.attention == "general":
            raise ValueError(
                "The energy F_s is defined for attention='usa' or 'sa' (V = s I, B = I); the "
                "general system with arbitrary V, B is not a gradient flow and has no energy."
            )

    def _log_kernel_shift(self, dtype):
        return -self.beta.astype(dtype) if self.shift_kernel else jnp.zeros((), dtype)

    def log_interaction(self, X, m=None) -> Array:
        """log iint K_beta dmu dmu (with the model's kernel convention); always finite."""
        self._require_energy()
        X, m = self.check_inputs(X, m)
        beta = self.beta.astype(X.dtype)
        model = self.resolve_kernel(*X.shape)
        if model._implementation(*X.shape) == "spectral":
            order = model.spectral_orders[X.shape[1] - 2]
            log_i = spectral_log_interaction(X, m, beta, order)
        else:
            log_i = log_interaction(X, m, beta, kernel=self.kernel)
        return log_i + self._log_kernel_shift(X.dtype)

    def log_energy(self, X, m=None) -> Array:
        """log |interaction part of F_s| = log iint K dmu dmu - log(2 beta).

        F_s = sign * exp(log_energy) + perceptron_energy; finite for any beta.
        """
        return self.log_interaction(X, m) - jnp.log(2 * self.beta.astype(jnp.result_type(X)))

    def perceptron_energy(self, X, m=None) -> Array:
        """(1/2) int v dmu."""
        self._require_energy()
        X, m = self.check_inputs(X, m)
        if isinstance(self.perceptron, MLP):
            raise ValueError("An MLP drift is not conservative: it has no potential energy.")
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
        self._require_energy()
        X, m = self.check_inputs(X, m)
        Y = check_points(Y, "Y", d=X.shape[1])
        beta = self.beta.astype(X.dtype)
        log_scale = self._log_kernel_shift(X.dtype) - jnp.log(beta)
        model = self.resolve_kernel(*X.shape)
        if model._implementation(*X.shape) == "spectral":
            f, _ = spectral_sums(Y, X, m, beta, model.spectral_orders[X.shape[1] - 2])
            kern = jnp.exp(beta + log_scale) * f
        else:
            kern = kernel_first_variation(Y, X, m, beta, log_scale=log_scale, kernel=self.kernel)
        out = self.sign.astype(X.dtype) * kern
        if self.perceptron is not None:
            out = out + 0.5 * self.perceptron.potential(Y)
        return out
