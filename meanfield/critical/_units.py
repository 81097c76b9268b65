"""The energy restricted to atoms in normalised units, its first variation, and the
stationarity residual.

For mu = sum_i m_i delta_{x_i}, lambda = e^{-beta} (plain kernel) or 1 (shifted kernel):

    phi~(y) = lambda phi_mu(y) = (s / beta) sum_j m_j e^{beta (<y, x_j> - 1)} + lambda v(y) / 2,
    f~ = lambda F_s[mu] = (s / (2 beta)) sum_ij m_i m_j e^{beta (<x_i, x_j> - 1)}
         + (lambda / 2) sum_i m_i v(x_i),

so every exponent is <= 0 and nothing overflows at large beta. The atomic energy stays a
dense k x k sum on purpose, not the kernel layer: k (the number of atoms) is small, and the
Hessians need exact second derivatives of it by jax.hessian / jacfwd, which a dense matrix
gives exactly and cheaply (the kernels are built for many particles and first derivatives).
`_log_model_factor` converts back to the units of `model.velocity`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..sphere import project


def _log_lambda(model, dtype):
    """log lambda, the normalised-units factor: lambda K(x, y) = e^{beta (<x, y> - 1)} for
    either kernel convention, so log lambda = -beta - model.log_kernel_shift (-beta for the
    plain kernel, 0 for the shifted one)."""
    return -model.beta.astype(dtype) - model.log_kernel_shift(dtype)


def _log_model_factor(model, dtype):
    """log(model units / normalised units) = -log lambda - beta [rescaled_time]."""
    beta = model.beta.astype(dtype)
    out = jnp.zeros((), dtype) if model.shift_kernel else beta
    return out - beta if model.rescaled_time else out


def _phi(model, y: Float[Array, " d"], X: Float[Array, "k d"], m: Float[Array, " k"]):
    """Normalised first variation phi~(y) = lambda phi_mu(y) (scalar); y may be off-sphere."""
    dtype = X.dtype
    beta = model.beta.astype(dtype)
    s = model.sign.astype(dtype)
    kern = jnp.sum(m * jnp.exp(beta * (X @ y - 1.0)))
    out = (s / beta) * kern
    if model.perceptron is not None:
        out = out + 0.5 * jnp.exp(_log_lambda(model, dtype)) * model.perceptron.potential(y)
    return out


def _energy(model, X: Float[Array, "k d"], m: Float[Array, " k"]):
    """Normalised energy f~ = lambda F_s[sum m_i delta_{x_i}] (scalar)."""
    dtype = X.dtype
    beta = model.beta.astype(dtype)
    s = model.sign.astype(dtype)
    K = jnp.exp(beta * (X @ X.T - 1.0))
    out = (s / (2 * beta)) * (m @ K @ m)
    if model.perceptron is not None:
        lam = jnp.exp(_log_lambda(model, dtype))
        out = out + 0.5 * lam * jnp.sum(m * model.perceptron.potential(X))
    return out


def _euclidean_grads(model, X, m) -> Float[Array, "k d"]:
    """grad phi~ (ambient, R^d) at every atom."""
    return jax.vmap(jax.grad(_phi, argnums=1), in_axes=(None, 0, None, None))(model, X, X, m)


def _riemannian_grads(model, X, m) -> Float[Array, "k d"]:
    """grad_S phi~(x_i) = P_{x_i} grad phi~(x_i), shape (k, d)."""
    return project(X, _euclidean_grads(model, X, m))


def _inputs(model, X, m):
    model.require_energy()
    return model.check_inputs(X, m)


def _positive(X, m):
    """Eagerly drop zero-mass atoms (they carry no energy); error if none is left."""
    keep = np.asarray(m) > 0
    if not keep.any():
        raise ValueError("`m` has no atom with positive mass.")
    return X[keep], m[keep]


def stationarity_residual(model, X: Float[Array, "n d"], m=None, *, field: str = "energy"):
    """max_{i: m_i > 0} |grad_S phi_mu(x_i)|, in the units of `model.velocity`.

    **Arguments:**

    - `model`: a `MeanField`. With `field="energy"` its attention must be "usa" or "sa"
        (the energy F_s must be defined); with `field="model"` any attention.
    - `X`: (n, d) atoms on S^{d-1}.
    - `m`: (n,) masses, non-negative and summing to 1; None (default) for uniform 1/n.
        Atoms with m_i = 0 are left out of the maximum.
    - `field`: which vector field is measured.
        - "energy" (default): the Riemannian gradient of the first variation of F_s, i.e.
          the USA velocity of the same (beta, sign, perceptron, kernel convention), also
          for attention="sa" (whose critical points coincide with USA's without a
          perceptron).
        - "model": the model's own velocity (SA, or the general non-gradient system).

    **Returns:** a scalar array, max over atoms with m_i > 0 of the speed |grad_S phi_mu(x_i)|
    (resp. of the model's velocity), in the units of `model.velocity`.

    **Raises:** `ValueError` if `field` is neither "energy" nor "model", if the energy is
    not defined (`field="energy"` with attention="general"), or if `X`, `m` fail the
    model's input checks (not on the sphere, NaN, masses not summing to 1, ...).
    """
    if field == "model":
        X, m = model.check_inputs(X, m)
        v = model.resolve_kernel(*X.shape, dtype=X.dtype).vector_field(0.0, X, m)
        return jnp.max(jnp.where(m > 0, jnp.linalg.norm(v, axis=1), 0.0))
    if field != "energy":
        raise ValueError(f"`field` must be 'energy' or 'model'; got {field!r}.")
    X, m = _inputs(model, X, m)
    return _residual(model, X, m) * jnp.exp(_log_model_factor(model, X.dtype))


@eqx.filter_jit
def _residual(model, X, m):
    g = jnp.linalg.norm(_riemannian_grads(model, X, m), axis=1)
    return jnp.max(jnp.where(m > 0, g, 0.0))


def _gradient_scale(model, X, m):
    """max_i |grad phi~(x_i)| (ambient): the size the residual is compared with."""
    g = jnp.linalg.norm(_euclidean_grads(model, X, m), axis=1)
    return jnp.maximum(jnp.max(jnp.where(m > 0, g, 0.0)), jnp.finfo(X.dtype).tiny)
