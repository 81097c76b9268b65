"""Perceptron potentials on the sphere.

A perceptron with weights a (k, d), bias b (k,), output weights omega (k,) and an
activation sigma with primitive phi (phi' = 2 sigma) defines

    v(x) = sum_k omega_k phi(<a_k, x> + b_k)                  (potential, scalar)
    u(x) = P_x sum_k omega_k sigma(<a_k, x> + b_k) a_k        (drift, = P_x grad v / 2)
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.scipy.special import ndtr
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import as_key, check_int, is_concrete
from ..sphere import project, uniform_sphere

_INV_SQRT_2PI = 0.3989422804014327


def _normal_pdf(s):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * s * s)


def _relu_primitive(s):
    """phi(s) = max(s, 0)^2."""
    return jnp.square(jax.nn.relu(s))


def _gelu(s):
    """Exact GELU, s Phi(s)."""
    return s * ndtr(s)


def _gelu_primitive(s):
    """phi(s) = (s^2 - 1) Phi(s) + s phi_N(s)."""
    return (s * s - 1) * ndtr(s) + s * _normal_pdf(s)


def _tanh_primitive(s):
    """phi(s) = 2 log cosh s, written as 2(|s| + log1p(e^{-2|s|}) - log 2) to avoid overflow."""
    a = jnp.abs(s)
    return 2 * (a + jnp.log1p(jnp.exp(-2 * a)) - jnp.log(2.0))


def _linear_primitive(s):
    """phi(s) = s^2."""
    return s * s


ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "relu": (jax.nn.relu, _relu_primitive),
    "gelu": (_gelu, _gelu_primitive),
    "tanh": (jnp.tanh, _tanh_primitive),
    "linear": (lambda s: s, _linear_primitive),
}
"""Activation name -> (sigma, phi) with phi' = 2 sigma."""


def activation_functions(name: str) -> tuple[Callable, Callable]:
    """Return (sigma, phi) for an activation name; phi' = 2 sigma."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"`activation` must be one of {sorted(ACTIVATIONS)}; got {name!r}."
        ) from None


class Perceptron(eqx.Module):
    """One-hidden-layer perceptron acting on points of the sphere (the conservative case):

        v(x) = sum_k omega_k phi(<a_k, x> + b_k),   u(x) = P_x grad v(x) / 2,   phi' = 2 sigma.

    **Arguments:**

    - `a`: (k, d) input weights; `b`: (k,) biases; `omega`: (k,) output weights.
    - `activation`: "relu", "gelu", "tanh" or "linear" (sigma; phi is its exact primitive).

    `potential(X)` = v(X), shape (n,); `drift(X)` = u(X), shape (n, d);
    `Perceptron.random(key, d, k=...)` draws one.
    """

    a: Float[Array, "k d"]
    b: Float[Array, " k"]
    omega: Float[Array, " k"]
    activation: str = eqx.field(static=True, default="relu")

    def __init__(self, a, b, omega, activation: str = "relu"):
        activation_functions(activation)
        a = jnp.asarray(a)
        if a.ndim != 2:
            raise ValueError(f"`a` must have shape (k, d); got shape {a.shape}.")
        k = a.shape[0]
        b = jnp.asarray(b, dtype=a.dtype)
        omega = jnp.asarray(omega, dtype=a.dtype)
        if b.shape != (k,):
            raise ValueError(f"`b` must have shape ({k},) to match `a`; got {b.shape}.")
        if omega.shape != (k,):
            raise ValueError(f"`omega` must have shape ({k},) to match `a`; got {omega.shape}.")
        for name, arr in (("a", a), ("b", b), ("omega", omega)):
            if is_concrete(arr) and not bool(jnp.all(jnp.isfinite(arr))):
                raise ValueError(f"`{name}` contains NaN or inf.")
        self.a, self.b, self.omega = a, b, omega
        self.activation = activation

    @classmethod
    def random(
        cls,
        key: PRNGKeyArray,
        d: int,
        k: int | None = None,
        activation: str = "relu",
        bias_scale: float = 0.0,
        dtype=None,
    ) -> Perceptron:
        """The paper's random perceptron: a_k uniform on S^{d-1}, omega_k ~ N(0, 1).

        k defaults to d; biases are N(0, bias_scale^2) (zero by default, as in the paper);
        `key` a PRNG key or an integer seed.
        """
        d = check_int(d, "d", minimum=2)
        k = d if k is None else check_int(k, "k")
        ka, kb, kw = jr.split(as_key(key), 3)
        dtype = dtype if dtype is not None else jnp.result_type(float)
        a = uniform_sphere(ka, k, d, dtype=dtype)
        b = bias_scale * jr.normal(kb, (k,), dtype=dtype)
        omega = jr.normal(kw, (k,), dtype=dtype)
        return cls(a, b, omega, activation)

    @property
    def dim(self) -> int:
        return self.a.shape[1]

    def preactivation(self, X: Float[Array, "... d"]) -> Float[Array, "... k"]:
        """<a_k, x> + b_k, shape (..., k)."""
        return X @ self.a.T.astype(X.dtype) + self.b.astype(X.dtype)

    def potential(self, X: Float[Array, "... d"]) -> Float[Array, "..."]:
        """v(x) = sum_k omega_k phi(<a_k, x> + b_k); shape (...)."""
        _, phi = activation_functions(self.activation)
        return phi(self.preactivation(X)) @ self.omega.astype(X.dtype)

    def euclidean_drift(self, X: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """grad v(x) / 2 = sum_k omega_k sigma(<a_k, x> + b_k) a_k (no projection)."""
        sigma, _ = activation_functions(self.activation)
        return (sigma(self.preactivation(X)) * self.omega.astype(X.dtype)) @ self.a.astype(X.dtype)

    def drift(self, X: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """u(x) = P_x sum_k omega_k sigma(<a_k, x> + b_k) a_k; shape (..., d)."""
        return project(X, self.euclidean_drift(X))

    def lipschitz_constant(self) -> float:
        """C = 2 sum_k |omega_k| |a_k|^2, the constant in the cluster-mass bound."""
        return 2 * jnp.sum(jnp.abs(self.omega) * jnp.sum(self.a**2, axis=1))


def check_perceptron(perceptron, d: int):
    """Validate that `perceptron` is None or a Perceptron acting on R^d."""
    if perceptron is None:
        return None
    if not isinstance(perceptron, Perceptron):
        raise ValueError(
            f"`perceptron` must be a meanfield.Perceptron or None; got {type(perceptron)}."
        )
    if perceptron.dim != d:
        raise ValueError(f"`perceptron` acts on R^{perceptron.dim} but the points are in R^{d}.")
    return perceptron
