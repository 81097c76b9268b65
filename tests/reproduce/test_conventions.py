"""The authors' conventions (arXiv 2601.21366 code) against meanfield's, to round-off.

E_theirs and their drift are re-implemented here in NumPy from their formulas
(wgf_circle/dynamics.py: compute_total_energy, _attention_drift, mlp_drift), so that the
test does not depend on their code.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import meanfield as mf
from meanfield.reproduce import conventions as cv
from meanfield.reproduce import load_reference


def _their_energy(theta, beta, a, s, activation):
    """E = (1/2 beta) mean_ij exp(beta(cos(theta_i - theta_j) - 1)) + (1/2) mean_i v(x_i),
    v = sum_k s_k psi(<a_k, x>), psi(z) = z^2 Phi(z) + z phi(z) (GELU), max(z, 0)^2 (ReLU)."""
    n = theta.size
    diff = theta[:, None] - theta[None, :]
    attention = np.exp(beta * (np.cos(diff) - 1.0)).sum() / (2.0 * beta * n * n)
    z = np.stack([np.cos(theta), np.sin(theta)], 1) @ a.T
    if activation == "gelu":
        psi = z**2 * 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    else:
        psi = np.maximum(z, 0.0) ** 2
    omega_scalar = np.sum((s[:, None] * a) * a, axis=1)  # their omega_j . a_j
    return attention + (psi @ omega_scalar).sum() / (2.0 * n)


def _their_velocity(theta, beta, a, s, activation):
    """Their descent flow -(A + u) in angles (self-attention included, unnormalised)."""
    n = theta.size
    diff = theta[None, :] - theta[:, None]
    att = (np.exp(beta * (np.cos(diff) - 1.0)) * np.sin(diff)).sum(1) / n
    x = np.stack([np.cos(theta), np.sin(theta)], 1)
    t = np.stack([-np.sin(theta), np.cos(theta)], 1)
    z = x @ a.T
    act = 0.5 * z * (1 + erf(z / np.sqrt(2))) if activation == "gelu" else np.maximum(z, 0)
    mlp = np.einsum("ij,ij->i", t, act @ (s[:, None] * a))
    return -(att + mlp)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_energy_relation(activation):
    rng = np.random.default_rng(3)
    n, beta = 64, 2.7
    theta = rng.uniform(0, 2 * np.pi, n)
    a, s = cv.authors_draw(11, 2, k=3)
    X = mf.angles_to_circle(jnp.asarray(theta))
    model = mf.MeanField(
        beta,
        sign=-1,
        shift_kernel=True,
        perceptron=cv.perceptron_from_authors(a, s=s, activation=activation),
    )
    F = float(model.energy(X))
    E = _their_energy(theta, beta, a, s, activation)
    corr = float(cv.energy_correction(X, a, s, activation))
    assert abs(F - (-E + corr)) < 1e-12
    if activation == "relu":
        assert corr == 0.0
    else:  # their GELU primitive is not the potential of their flow: the correction is real
        assert abs(corr) > 1e-3
        assert abs(F - (-E - corr)) > 1e-3  # issue 21's sign (-) does not hold


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_same_flow(activation):
    rng = np.random.default_rng(4)
    theta = rng.uniform(0, 2 * np.pi, 40)
    a, s = cv.authors_draw(5, 2)
    omega = s[:, None] * a
    p = cv.perceptron_from_authors(a, omega=omega, activation=activation)
    assert np.allclose(np.asarray(p.omega), -s, rtol=0, atol=1e-15)
    model = mf.MeanField(3.0, sign=-1, shift_kernel=True, perceptron=p)
    X = mf.angles_to_circle(jnp.asarray(theta))
    V = np.asarray(model.velocity(X))
    tangent = np.stack([-np.sin(theta), np.cos(theta)], 1)
    ours = np.einsum("ij,ij->i", tangent, V)
    assert np.max(np.abs(ours - _their_velocity(theta, 3.0, a, s, activation))) < 1e-14


def test_perceptron_from_authors_checks():
    a, s = cv.authors_draw(1, 2)
    with pytest.raises(ValueError, match="exactly one"):
        cv.perceptron_from_authors(a)
    with pytest.raises(ValueError, match="non-gradient"):
        cv.perceptron_from_authors(a, omega=np.ones_like(a) + a[::-1])
    up = cv.perceptron_from_authors(a, s=s, ascending=True)
    assert np.allclose(np.asarray(up.omega), s)


def test_authors_draw_is_the_stored_one():
    ref = load_reference("perceptron_localisation")
    a, s = cv.authors_draw(777, 2)
    assert np.array_equal(a, np.asarray(ref["reduced"]["perceptron"]["a"]))
    assert np.array_equal(s, np.asarray(ref["reduced"]["perceptron"]["s"]))
