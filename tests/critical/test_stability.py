"""Certificates: closed-form stable and unstable configurations (Dirac, antipodal pair,
k-gons, simplex) and flows that end at certified points or leave saddles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.atoms import cluster
from meanfield.critical import (
    MASS_BOUND_LIMIT,
    concavity_angle,
    newton_refine,
    stability_report,
    stationarity_residual,
)

from .shapes import SIMPLEX_3D, circle_splitting, flow, paper_model, polygon


def test_single_dirac_attractive_is_strictly_stable():
    """s = +1, no perceptron, mu = delta_x: phi(y) = e^{beta <y, x>} / beta is maximal at
    y = x with Hess_S phi(x) = -e^{beta} I (splitting-stable), and f(x) = e^{beta}/(2 beta)
    is constant (transport Hessian = 0, all of it along rotations). So it is strictly
    stable modulo rotations; it is the global maximum of F_+ (K <= e^beta)."""
    model = mf.MeanField(2.0, sign=1)
    X, m = jnp.array([[0.0, 0.6, 0.8]]), jnp.ones(1)
    rep = stability_report(model, X, m)
    assert rep.residual < 1e-14
    np.testing.assert_allclose(rep.splitting_eigenvalues, -np.exp(2.0), rtol=1e-12)
    assert rep.symmetry_dim == 2 and rep.transport_eigenvalues.size == 0
    assert rep.stable and rep.strictly_stable


@pytest.mark.parametrize("sign", [1, -1])
def test_antipodal_pair(sign):
    """x_2 = -x_1, masses 1/2: phi(y) = s cosh(beta <y, x_1>) / beta, so the splitting Hessian
    is -s sinh(beta) I at both atoms. f depends only on <x_1, x_2>, through
    s e^{beta <x_1, x_2>} / (4 beta), and <x_1, x_2> = -1 is its minimum: off the rotation
    orbit the transport Hessian has the sign of s. So neither sign gives a stable point:
    s = +1 is splitting-stable but transport-unstable (the atoms want to merge),
    s = -1 is transport-stable but splitting-unstable (atoms want to spread)."""
    beta = 2.0
    model = mf.MeanField(beta, sign=sign)
    X = jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    rep = stability_report(model, X)
    assert rep.residual < 1e-13 and rep.stationary
    np.testing.assert_allclose(rep.splitting_eigenvalues, -sign * np.sinh(beta), rtol=1e-12)
    assert np.all(sign * rep.transport_eigenvalues > 0)
    assert not rep.stable and not rep.strictly_stable
    assert rep.splitting_stable == (sign == 1) and rep.transport_stable == (sign == -1)


@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("sign", [1, -1])
def test_regular_polygons(k, sign):
    """Equal-mass regular k-gons on S^1 are stationary by symmetry. The splitting Hessian
    is the closed form `circle_splitting`. In angles, f = sum_{ij} g(t_i - t_j) with
    g(u) = s e^{beta cos u} / (2 beta k^2), so d^2 f along delta is
    sum_{i != j} g''(t_i - t_j)(delta_i - delta_j)^2. When every pairwise angle exceeds the
    concavity angle (2 pi / k > theta_c(beta = 1) = 0.905), g'' has the sign of s for all
    pairs, so off the rotation orbit (delta constant) the transport Hessian has the sign of
    s: for s = +1 the polygon is unstable, for s = -1 transport-stable but (self term
    e^{beta}/k dominates) splitting-unstable."""
    beta = 1.0
    assert 2 * np.pi / k > float(concavity_angle(beta))
    rep = stability_report(mf.MeanField(beta, sign=sign), polygon(k))
    assert rep.residual < 1e-13
    np.testing.assert_allclose(
        rep.splitting_eigenvalues.ravel(), circle_splitting(k, beta, sign), rtol=1e-12
    )
    assert rep.symmetry_dim == 1
    assert np.all(sign * rep.transport_eigenvalues > 0)
    assert not rep.stable
    if sign == -1:
        assert rep.transport_stable and not rep.splitting_stable


def test_regular_simplex_repulsive_is_splitting_unstable():
    """Regular simplex (k = d + 1 = 4 on S^2), s = -1, equal masses: stationary by symmetry.
    Hess_S phi(x_i)[xi, xi] = sum_j m_j e^{beta c_ij}(c_ij - beta <xi, x_j>^2); its trace is
    (m e^{beta}(d-1) - 3 m e^{-beta/3}((d-1)/3 + beta (1 - 1/9))) > 0 at beta = 2, and by the
    symmetry of the simplex (its stabiliser acts irreducibly on x_i^perp) the Hessian is a
    multiple of I: positive definite, so splitting increases F: unstable."""
    beta, d = 2.0, 3
    rep = stability_report(mf.MeanField(beta, sign=-1), SIMPLEX_3D)
    assert rep.residual < 1e-13
    trace = 0.25 * (np.exp(beta) * (d - 1) - 3 * np.exp(-beta / 3) * (2 / 3 + beta * 8 / 9))
    np.testing.assert_allclose(rep.splitting_eigenvalues, trace / (d - 1), rtol=1e-12)
    assert not rep.stable and rep.symmetry_dim == 3


@pytest.mark.slow
def test_flow_ends_at_a_certified_stable_point_repulsive_with_perceptron(getkey):
    """Repulsive d = 2 with perceptron (shifted kernel, beta = 5): the flow from uniform data
    clusters into atoms; Newton-refined, they are certified stable; every cluster obeys
    the mass bound (the kernel-only limit 0.5742 here, see mass_bound's docstring) and
    has diameter below 1/(2 sqrt(beta)). Perturb and flow: it returns."""
    model = paper_model()
    X = flow(model, mf.uniform_sphere(getkey(), 200, 2), 3000)
    atoms = cluster(X, tol=0.05)
    assert 2 <= int(atoms.count) <= 8
    assert float(atoms.max_diameter) < 1 / (2 * np.sqrt(5.0))
    assert float(atoms.largest_mass) < MASS_BOUND_LIMIT
    cp = newton_refine(model, atoms.locations, atoms.masses)
    assert float(cp.residual) <= 1e-10
    rep = stability_report(model, cp.X, cp.m)
    assert rep.strictly_stable
    # perturbation experiment: split each atom into 10 particles displaced by ~0.05 rad
    reps = 10
    Xp = jnp.repeat(cp.X, reps, axis=0)
    mp = jnp.repeat(cp.m, reps) / reps
    Xp = mf.retract(Xp + 0.05 * jax.random.normal(getkey(), Xp.shape))
    back = mf.integrate(model, Xp, m=mp, dt=0.1, steps=2000).final
    after = cluster(back, mp, tol=0.05)
    assert int(after.count) == int(atoms.count)
    np.testing.assert_allclose(after.masses, cp.m, atol=1e-12)
    assert float(jnp.max(jnp.abs(after.locations - cp.X))) < 1e-3


def test_strict_saddle_is_left_by_the_flow(getkey):
    """s = +1 antipodal pair (transport-unstable, see test_antipodal_pair): particles
    perturbed off it by 1e-3 flow away and merge into one atom."""
    model = mf.MeanField(1.0, sign=1)
    X = jnp.repeat(jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), 10, axis=0)
    X = mf.retract(X + 1e-3 * jax.random.normal(getkey(), X.shape))
    end = flow(model, X, 3000)
    assert int(cluster(end, tol=0.05).count) == 1
    # ... while exactly at the saddle, it stays
    still = flow(model, jnp.repeat(jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), 10, 0), 100)
    assert int(cluster(still, tol=0.05).count) == 2


def test_attractive_flow_ends_in_one_certified_atom(getkey):
    model = mf.MeanField(1.0, sign=1)
    X = flow(model, mf.uniform_sphere(getkey(), 64, 3), 1500, dt=0.2)
    atoms = cluster(X, tol=0.05)
    assert int(atoms.count) == 1
    rep = stability_report(model, atoms.locations, atoms.masses)
    assert rep.stable and rep.strictly_stable


@pytest.mark.slow
def test_linear_activation_has_a_non_atomic_stationary_measure():
    """Linear activation on S^1, a = (e_1, e_2), omega = (w, -w), b = 0: v = w cos(2 theta).
    With s = -1 and density rho = (1 + eps cos 2 theta) / (2 pi),
    int e^{beta cos(theta - t)} rho(t) dt = I_0(beta) + eps I_2(beta) cos 2 theta, so
    phi_mu = -(I_0 + eps I_2 cos 2 theta)/beta + (w/2) cos 2 theta is constant iff
    eps = beta w / (2 I_2(beta)): a spread stationary measure (the global maximiser, as
    F_- is strictly concave in mu). Its n-point periodic trapezoid discretisation is
    stationary to spectral accuracy, and has no atoms."""
    from scipy.special import iv

    beta, w, n = 1.0, 0.1, 64
    eps = beta * w / (2 * iv(2, beta))
    assert 0 < eps < 1
    p = mf.Perceptron(jnp.eye(2), jnp.zeros(2), jnp.array([w, -w]), "linear")
    model = mf.MeanField(beta, sign=-1, perceptron=p)
    th = 2 * jnp.pi * jnp.arange(n) / n
    X = mf.angles_to_circle(th)
    m = (1 + eps * jnp.cos(2 * th)) / n
    m = m / m.sum()
    assert float(stationarity_residual(model, X, m)) < 1e-13
    assert int(cluster(X, m, tol=0.05).count) == n
    # the same model with relu / gelu drives the particles into atoms
    for act in ("relu", "gelu"):
        pa = mf.Perceptron(jnp.eye(2), jnp.zeros(2), jnp.array([3.0, -3.0]), act)
        mdl = mf.MeanField(5.0, sign=-1, perceptron=pa, shift_kernel=True)
        end = flow(mdl, X, 3000)
        assert int(cluster(end, m, tol=0.05).count) <= 8
    # ... whereas the linear flow from uniform stays spread
    end = flow(model, X, 3000)
    assert int(cluster(end, m, tol=0.05).count) == n
