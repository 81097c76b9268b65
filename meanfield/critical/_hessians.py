"""Sphere Hessians of the atomic energy: the splitting Hessian Hess_S phi_mu(x_i) of each
atom (splitting stability: all <= 0) and the transport Hessian of f on the product of
spheres in the mass-weighted metric, H_w = M^{-1/2} H M^{-1/2}; tangent bases
(Householder) and the rotation modes xi_i = A x_i (A skew) that H_w annihilates without a
perceptron.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._units import _energy, _inputs, _log_model_factor, _phi


def tangent_basis(x: Float[Array, " d"]) -> Float[Array, "d d-1"]:
    """Orthonormal basis of the tangent space x^perp, shape (d, d-1).

    Columns 2..d of the Householder reflection H = I - 2 w w^T / |w|^2,
    w = x + sign(x_1) e_1, which maps e_1 to -sign(x_1) x; smooth away from x_1 = 0 sign flips.

    **Arguments:**

    - `x`: (d,) a unit vector (not checked; the columns are orthonormal and orthogonal to
        `x` only when |x| = 1). sign(x_1) is taken as +1 at x_1 = 0. Traceable (jit, vmap).

    **Returns:** E_x, a (d, d-1) array with orthonormal columns spanning x^perp.
    """
    d = x.shape[0]
    sgn = jnp.where(x[0] >= 0, 1.0, -1.0).astype(x.dtype)
    w = x.at[0].add(sgn)
    H = jnp.eye(d, dtype=x.dtype) - 2.0 * jnp.outer(w, w) / jnp.dot(w, w)
    return H[:, 1:]


def _sphere_hessian(x, grad, hess):
    """E^T grad^2 g E - <x, grad g> I in tangent coordinates at x."""
    E = tangent_basis(x)
    return E.T @ hess @ E - jnp.dot(x, grad) * jnp.eye(E.shape[1], dtype=x.dtype)


@eqx.filter_jit
def _splitting_hessians(model, X, m) -> Float[Array, "k d-1 d-1"]:
    def one(x):
        g = jax.grad(_phi, argnums=1)(model, x, X, m)
        h = jax.hessian(_phi, argnums=1)(model, x, X, m)
        return _sphere_hessian(x, g, h)

    return jax.vmap(one)(X)


def splitting_hessian(model, X: Float[Array, "k d"], m=None) -> Float[Array, "k d-1 d-1"]:
    """Riemannian Hessian of phi_mu at every atom, in tangent coordinates (model units).

    Entry i is E_i^T grad^2 phi_mu(x_i) E_i - <x_i, grad phi_mu(x_i)> I_{d-1}, with E_i =
    `tangent_basis(x_i)`. Splitting atom i along xi changes F by (m_i/2) eps^2 xi^T H_i xi.

    **Arguments:**

    - `model`: a `MeanField` with attention "usa" or "sa" (the energy must be defined).
    - `X`: (k, d) atoms on S^{d-1}.
    - `m`: (k,) masses, non-negative and summing to 1; None (default) for uniform 1/k.
        Zero-mass atoms are kept (they carry no energy but still get a Hessian).

    **Returns:** a (k, d-1, d-1) array, H_i = Hess_S phi_mu(x_i) for every atom, in the
    units of `model.velocity`. Splitting stability: every H_i <= 0.

    **Raises:** `ValueError` if the energy is not defined (attention="general") or if `X`,
    `m` fail the model's input checks.
    """
    X, m = _inputs(model, X, m)
    return _splitting_hessians(model, X, m) * jnp.exp(_log_model_factor(model, X.dtype))


@eqx.filter_jit
def _transport_hessian(model, X, m, weighted: bool = True) -> Float[Array, "K K"]:
    """Riemannian Hessian of f~ on (S^{d-1})^k in tangent coordinates, K = k (d-1)."""
    k, d = X.shape
    grad = jax.grad(_energy, argnums=1)(model, X, m)  # (k, d)
    hess = jax.hessian(_energy, argnums=1)(model, X, m)  # (k, d, k, d)
    E = jax.vmap(tangent_basis)(X)  # (k, d, d-1)
    H = jnp.einsum("iap,iajb,jbq->ipjq", E, hess, E)
    normal = jnp.sum(X * grad, axis=1)  # <x_i, d f / d x_i>
    eye = jnp.eye(d - 1, dtype=X.dtype)
    H = H - jnp.einsum("i,ij,pq->ipjq", normal, jnp.eye(k, dtype=X.dtype), eye)
    if weighted:
        w = 1.0 / jnp.sqrt(m)
        H = H * w[:, None, None, None] * w[None, None, :, None]
    H = H.reshape(k * (d - 1), k * (d - 1))
    return 0.5 * (H + H.T)


def transport_hessian(
    model, X: Float[Array, "k d"], m=None, *, weighted: bool = True
) -> Float[Array, "K K"]:
    """Hessian of f(x_1..x_k) = F_s[sum m_i delta_{x_i}] on the product of spheres.

    Shape (k(d-1), k(d-1)) in tangent coordinates (atom-major, E_i = `tangent_basis(x_i)`),
    model units. Block (i, j): E_i^T (d^2 f / dx_i dx_j) E_j - delta_ij <x_i, df/dx_i> I.
    weighted=True (default) returns H_w = M^{-1/2} H M^{-1/2}, the Hessian in the
    mass-weighted metric sum m_i |xi_i|^2 (all masses must be > 0).

    **Arguments:**

    - `model`: a `MeanField` with attention "usa" or "sa" (the energy must be defined).
    - `X`: (k, d) atoms on S^{d-1}.
    - `m`: (k,) masses, non-negative and summing to 1; None (default) for uniform 1/k.
        With `weighted=True` every mass must be > 0 (checked eagerly, so `m` must be
        concrete).
    - `weighted`: True (default) for H_w = M^{-1/2} H M^{-1/2}; False for H itself.

    **Returns:** a symmetric (k(d-1), k(d-1)) array (symmetrised as (H + H^T) / 2), index
    i (d-1) + p for tangent direction p of atom i, in the units of `model.velocity`.

    **Raises:** `ValueError` if the energy is not defined, if `X`, `m` fail the model's
    input checks, or if `weighted=True` and some m_i = 0 (drop zero-mass atoms first).
    """
    X, m = _inputs(model, X, m)
    if weighted and not bool(np.all(np.asarray(m) > 0)):
        raise ValueError("`m` must be > 0 for the mass-weighted Hessian; drop zero-mass atoms.")
    H = _transport_hessian(model, X, m, weighted)
    return H * jnp.exp(_log_model_factor(model, X.dtype))


def _tangent_bases_np(X: np.ndarray) -> np.ndarray:
    """NumPy twin of `tangent_basis`, for every row: (k, d, d-1)."""
    k, d = X.shape
    sgn = np.where(X[:, 0] >= 0, 1.0, -1.0)
    W = X.copy()
    W[:, 0] += sgn
    H = np.eye(d)[None] - 2.0 * W[:, :, None] * W[:, None, :] / np.sum(W * W, 1)[:, None, None]
    return H[:, :, 1:]


def rotation_modes(X: Float[Array, "k d"], m: Float[Array, " k"]) -> Float[Array, "K r"]:
    """Orthonormal basis (in H_w coordinates) of the infinitesimal rotations of the atoms.

    Columns span {(sqrt(m_i) E_i^T A x_i)_i : A skew}; r = their rank (<= d(d-1)/2).
    Computed eagerly in NumPy (float64).

    **Arguments:**

    - `X`: (k, d) atoms on S^{d-1} (concrete; not validated).
    - `m`: (k,) masses, >= 0 (concrete).

    **Returns:** a (k(d-1), r) array with orthonormal columns, in the dtype of `X`, laid out
    like the rows of `transport_hessian`. The rank r counts the singular values above
    1e3 eps max(1, s_max) of the d(d-1)/2 generator images (eps of the dtype of `X`).
    Without a perceptron H_w vanishes on its span.
    """
    Xh, mh = np.asarray(X, np.float64), np.asarray(m, np.float64)
    k, d = Xh.shape
    p, q = np.triu_indices(d, 1)
    gens = np.zeros((len(p), d, d))
    gens[np.arange(len(p)), p, q] = 1.0
    gens[np.arange(len(p)), q, p] = -1.0
    E = _tangent_bases_np(Xh)
    V = np.einsum("gab,ib->gia", gens, Xh)  # (g, k, d) tangent vectors A x_i
    C = np.einsum("iap,gia->gip", E, V) * np.sqrt(mh)[None, :, None]
    C = C.reshape(len(p), -1).T  # (K, g)
    U, S, _ = np.linalg.svd(C, full_matrices=False)
    eps = float(jnp.finfo(jnp.result_type(X)).eps)
    r = int(np.sum(1e3 * eps * max(1.0, float(S[0])) < S))
    return jnp.asarray(U[:, :r], jnp.result_type(X))


def _complement(basis: Float[Array, "K r"], K: int, dtype) -> Float[Array, "K K-r"]:
    """Orthonormal basis of the orthogonal complement of span(basis) (eager, NumPy)."""
    if basis.shape[1] == 0:
        return jnp.eye(K, dtype=dtype)
    U, _, _ = np.linalg.svd(np.asarray(basis, np.float64), full_matrices=True)
    return jnp.asarray(U[:, basis.shape[1] :], dtype)
