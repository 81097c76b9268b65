"""Newton refinement and the searches (ascent, Adam, L-BFGS, saddle, masses)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.critical import (
    find_critical_point,
    newton_refine,
    stability_report,
    stationarity_residual,
)

from .shapes import polygon


def test_newton_reaches_1e_10_from_a_perturbed_critical_point(getkey):
    """A polygon is a (non-degenerate mod rotation) critical point: perturb, refine, return."""
    model = mf.MeanField(1.0, sign=1)
    X = polygon(5)
    Xp = mf.retract(X + 1e-2 * jax.random.normal(getkey(), X.shape))
    assert float(stationarity_residual(model, Xp)) > 1e-3
    cp = newton_refine(model, Xp)
    assert float(cp.residual) <= 1e-10 and bool(cp.converged)
    G = np.asarray(cp.X @ cp.X.T)  # still a regular pentagon
    np.testing.assert_allclose(np.sort(G, axis=1), np.sort(np.asarray(X @ X.T), axis=1), atol=1e-9)


@pytest.mark.parametrize(
    "method",
    [
        pytest.param("ascent", marks=pytest.mark.slow),
        pytest.param("adam", marks=pytest.mark.slow),
        "lbfgs",
        "saddle",
    ],
)
def test_optimisers_find_critical_points(method, getkey):
    """Every search ends (after Newton) at residual <= 1e-10; the ascent methods at a stable
    point. Repulsive with a perceptron on S^1, shifted kernel (the paper's convention)."""
    p = mf.Perceptron(
        mf.angles_to_circle(jnp.array([0.2, 2.5])), jnp.zeros(2), jnp.array([1.0, -0.7]), "gelu"
    )
    model = mf.MeanField(5.0, sign=-1, perceptron=p, shift_kernel=True)
    X0 = polygon(6, offset=0.1)
    cp = find_critical_point(model, X0, method=method, steps=200)
    assert float(cp.residual) <= 1e-10
    if method != "saddle":
        assert stability_report(model, cp.X, cp.m).stable


def test_saddle_search_finds_a_saddle():
    """s = +1, no perceptron, 3 atoms near an equilateral triangle: minimising |grad|^2 and
    Newton converge to the triangle, a strict saddle (transport Hessian > 0 off rotations)."""
    model = mf.MeanField(1.0, sign=1)
    X0 = mf.angles_to_circle(jnp.array([0.0, 2.0, 4.2]))
    cp = find_critical_point(model, X0, method="saddle", steps=100)
    rep = stability_report(model, cp.X, cp.m)
    assert rep.stationary and not rep.stable and np.all(rep.transport_eigenvalues > 0)
    G = np.asarray(cp.X @ cp.X.T)
    np.testing.assert_allclose(G[~np.eye(3, dtype=bool)], -0.5, atol=1e-9)


@pytest.mark.slow
def test_optimise_masses_on_the_simplex(getkey):
    """Replicator ascent on masses: at the end phi_mu is (nearly) constant on the support."""
    p = mf.Perceptron.random(getkey(), 2, activation="relu")
    model = mf.MeanField(3.0, sign=-1, perceptron=p, shift_kernel=True)
    cp = find_critical_point(
        model, polygon(6), method="ascent", steps=2000, learning_rate=0.2, optimize_masses=True
    )
    assert float(cp.residual) <= 1e-10
    phi = np.asarray(model.first_variation(cp.X, cp.X, cp.m))
    assert np.ptp(phi) < 1e-3 * np.abs(phi).max()


def test_atoms_below_mass_floor_are_dropped_and_masses_renormalised():
    """An atom at or below `mass_floor` is removed before Newton, and the survivors' masses
    are renormalised to a probability: m = (0.48, 0.48, 0.04) -> (0.5, 0.5)."""
    model = mf.MeanField(2.0, sign=-1)
    X0 = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    m0 = jnp.array([0.48, 0.48, 0.04])
    cp = find_critical_point(
        model, X0, m0, method="ascent", steps=1, learning_rate=1e-6, mass_floor=0.05
    )
    assert cp.X.shape == (2, 2)
    np.testing.assert_allclose(cp.m, [0.5, 0.5], rtol=1e-14)
    np.testing.assert_allclose(jnp.sum(cp.m), 1.0, rtol=1e-15)
    assert bool(cp.converged)
    np.testing.assert_allclose(jnp.abs(cp.X @ cp.X[0]), [1.0, 1.0], atol=1e-12)
