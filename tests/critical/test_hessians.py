"""Sphere Hessians against finite differences, tangent bases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.critical import (
    splitting_hessian,
    tangent_basis,
    transport_hessian,
)


@pytest.fixture
def smooth_case(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="gelu", bias_scale=0.3)
    model = mf.MeanField(1.5, sign=-1, perceptron=p)
    X = mf.uniform_sphere(getkey(), 4, 3)
    m = jnp.array([0.1, 0.2, 0.3, 0.4])
    return model, X, m


def test_tangent_basis_is_orthonormal(getkey):
    for x in mf.uniform_sphere(getkey(), 5, 4):
        E = tangent_basis(x)
        np.testing.assert_allclose(E.T @ E, np.eye(3), atol=1e-14)
        np.testing.assert_allclose(E.T @ x, 0, atol=1e-14)


def test_splitting_hessian_matches_finite_differences(smooth_case, getkey):
    model, X, m = smooth_case
    H = splitting_hessian(model, X, m)
    h = 1e-3
    for i in range(X.shape[0]):
        E = tangent_basis(X[i])
        xi = E @ jax.random.normal(getkey(), (2,))
        Y = jnp.stack([mf.exp_map(X[i], t * xi) for t in (-2 * h, -h, 0.0, h, 2 * h)])
        phi = model.first_variation(Y, X, m)
        # second derivative along a geodesic: central differences at h and 2h, Richardson
        # extrapolated (error O(h^4) + eps |phi| / h^2: 5e-8 relative here, 2e-5 at h = 1e-4
        # without it)
        d_h = (phi[1] - 2 * phi[2] + phi[3]) / h**2
        d_2h = (phi[0] - 2 * phi[2] + phi[4]) / (2 * h) ** 2
        fd = (4 * d_h - d_2h) / 3
        np.testing.assert_allclose(xi @ E @ H[i] @ E.T @ xi, fd, rtol=1e-6)


def test_transport_hessian_matches_finite_differences(smooth_case, getkey):
    model, X, m = smooth_case
    k = X.shape[0]
    Hw = transport_hessian(model, X, m)
    H = transport_hessian(model, X, m, weighted=False)
    sq = np.repeat(np.sqrt(np.asarray(m)), 2)
    np.testing.assert_allclose(Hw, H / np.outer(sq, sq), rtol=1e-12)
    E = jax.vmap(tangent_basis)(X)
    h = 1e-4
    for _ in range(3):
        c = jax.random.normal(getkey(), (k, 2))
        V = jnp.einsum("iap,ip->ia", E, c)
        F = [model.energy(mf.exp_map(X, t * V), m) for t in (-h, 0.0, h)]
        fd = (F[0] - 2 * F[1] + F[2]) / h**2
        np.testing.assert_allclose(c.reshape(-1) @ H @ c.reshape(-1), fd, rtol=1e-5)
