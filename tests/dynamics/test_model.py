"""Attention dynamics: tangency, energy monotonicity, SA/USA relations, two-particle ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import meanfield as mf


@pytest.mark.parametrize("attention", ["usa", "sa"])
@pytest.mark.parametrize("sign", [1, -1])
def test_velocity_is_tangent_and_rows_stay_on_sphere(getkey, attention, sign):
    p = mf.Perceptron.random(getkey(), 5, activation="gelu")
    model = mf.MeanField(2.0, sign=sign, attention=attention, perceptron=p)
    X = mf.uniform_sphere(getkey(), 40, 5)
    v = model.velocity(X)
    np.testing.assert_allclose(jnp.sum(v * X, axis=1), 0, atol=1e-13)
    for method in ("euler", "rk4", "geodesic"):
        traj = mf.integrate(model, X, dt=0.05, steps=200, method=method, save_every=50)
        assert traj.xs.shape == (5, 40, 5)
        np.testing.assert_allclose(jnp.linalg.norm(traj.xs, axis=-1), 1, atol=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("beta", [0.5, 2.0, 6.0])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_energy_is_non_decreasing_along_usa(getkey, sign, beta, activation):
    p = mf.Perceptron.random(getkey(), 3, activation=activation, bias_scale=0.5)
    model = mf.MeanField(beta, sign=sign, perceptron=p)
    X = mf.uniform_sphere(getkey(), 24, 3)
    dt = 0.02 * np.exp(-beta)  # the USA speed scales like e^beta
    traj = mf.integrate(model, X, dt=dt, steps=400, method="rk4", save_every=4)
    F = jax.vmap(model.energy)(traj.xs)
    assert F[-1] > F[0]  # it actually moves
    assert np.all(np.diff(F) >= -1e-12 * np.abs(F).max())


@pytest.mark.parametrize("sign", [1, -1])
def test_energy_is_non_decreasing_along_sa_without_perceptron(getkey, sign):
    # SA is a gradient flow of the same energy in a modified metric (Geshkovski et al. 2023).
    model = mf.MeanField(3.0, sign=sign, attention="sa")
    X = mf.uniform_sphere(getkey(), 16, 3)
    traj = mf.integrate(model, X, dt=0.01, steps=300, method="rk4", save_every=3)
    F = jax.vmap(model.energy)(traj.xs)
    assert np.all(np.diff(F) >= -1e-12 * np.abs(F).max())


def test_sa_and_usa_agree_at_a_single_point(getkey):
    p = mf.Perceptron.random(getkey(), 3)
    X = jnp.tile(mf.uniform_sphere(getkey(), 1, 3), (7, 1))
    usa = mf.MeanField(5.0, sign=-1, perceptron=p).velocity(X)
    sa = mf.MeanField(5.0, sign=-1, attention="sa", perceptron=p).velocity(X)
    # The interaction term is e^beta P_x x = 0 up to rounding of size e^beta * eps.
    np.testing.assert_allclose(usa, sa, atol=1e-12)
    np.testing.assert_allclose(usa, p.drift(X), atol=1e-12)


def two_particles(theta0, d):
    X = np.zeros((2, d))
    X[0, 0] = 1.0
    X[1, 0], X[1, 1] = np.cos(theta0), np.sin(theta0)
    return jnp.asarray(X)


def test_sa_is_usa_up_to_a_time_change_for_two_particles(getkey):
    # With m = (1/2, 1/2): v_SA = v_USA / (m (e^beta + e^{beta cos theta})).
    beta, theta = 2.0, 1.1
    X = two_particles(theta, 3)
    usa = mf.MeanField(beta, sign=1).velocity(X)
    sa = mf.MeanField(beta, sign=1, attention="sa").velocity(X)
    factor = 0.5 * (np.exp(beta) + np.exp(beta * np.cos(theta)))
    np.testing.assert_allclose(sa * factor, usa, atol=1e-14)


def angle_rhs(attention, beta, sign):
    """d theta / dt for two particles of mass 1/2 at angle theta.

    Each particle moves toward (s = +1) the other with speed |v| = w sin(theta), where
    w = (1/2) e^{beta cos theta} (USA) or e^{beta cos theta} / (e^beta + e^{beta cos theta})
    (SA); the angle closes at twice that rate: theta' = -2 s w sin(theta).
    """

    def rhs(t, th):
        k = np.exp(beta * np.cos(th))
        w = 0.5 * k if attention == "usa" else k / (np.exp(beta) + k)
        return -2 * sign * w * np.sin(th)

    return rhs


@pytest.mark.parametrize("attention", ["usa", "sa"])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("d", [2, 4])
def test_two_particle_angle_follows_scalar_ode(attention, sign, d):
    beta, theta0, T, steps = 1.5, 1.2, 2.0, 400
    model = mf.MeanField(beta, sign=sign, attention=attention)
    traj = mf.integrate(
        model, two_particles(theta0, d), dt=T / steps, steps=steps, method="rk4", save_every=40
    )
    angles = mf.geodesic_distance(traj.xs[:, 0], traj.xs[:, 1])
    sol = solve_ivp(
        angle_rhs(attention, beta, sign),
        (0, T),
        [theta0],
        t_eval=np.asarray(traj.ts),
        rtol=1e-12,
        atol=1e-13,
    )
    np.testing.assert_allclose(angles, sol.y[0], atol=1e-9)
    assert abs(float(angles[-1]) - theta0) > 0.1  # it moved


def test_vector_field_signature_matches_velocity(getkey):
    model = mf.MeanField(1.0, sign=-1)
    X = mf.uniform_sphere(getkey(), 6, 3)
    m = jnp.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.1])
    np.testing.assert_allclose(model.vector_field(0.0, X, m), model.velocity(X, m))
    np.testing.assert_allclose(model.vector_field(0.0, X, None), model.velocity(X))


def test_zero_mass_particles_are_passive_tracers(getkey):
    X = mf.uniform_sphere(getkey(), 6, 3)
    m = jnp.array([0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    for attention in ("usa", "sa"):
        model = mf.MeanField(3.0, attention=attention)
        v_all = model.velocity(X, m)
        v_two = model.velocity(X[:2], m[:2])
        np.testing.assert_allclose(v_all[:2], v_two, atol=1e-14)
        assert np.all(np.isfinite(v_all))
