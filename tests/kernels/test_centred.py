"""Relative precision of tiny forces at large beta (metastability), float64.

On the circle with the shifted kernel, the USA angle velocity is the closed form

    theta_i' = (1/n) sum_j e^{beta (cos(theta_j - theta_i) - 1)} sin(theta_j - theta_i)

After two particles merge (bit-identical), the forces between clusters are e^{-beta (1 -
cos gap)}: at beta = 4000 they are 1e-35 .. 1e-55 here. The velocity formed as "weighted
mean, then project" has a round-off floor of ~1e-16 on every particle; the centred kernel
(difference form) keeps each velocity to relative precision.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield import kernels

BETA = 4000.0
THETAS = np.array([0.0, 0.0, 0.2, 0.2, 0.45])  # two merged pairs and a loner


def angle_velocity(theta, beta):
    diff = theta[None, :] - theta[:, None]
    return np.mean(np.exp(beta * (np.cos(diff) - 1.0)) * np.sin(diff), axis=1)


def model_angle_velocity(kernel):
    X = mf.angles_to_circle(jnp.asarray(THETAS))
    model = mf.MeanField(BETA, sign=1, attention="usa", shift_kernel=True, kernel=kernel)
    v = np.asarray(model.velocity(X))
    tangent = np.stack([-np.sin(THETAS), np.cos(THETAS)], axis=1)
    return np.sum(v * tangent, axis=1)


def test_forces_down_to_1e_minus_45_keep_relative_precision():
    exact = angle_velocity(THETAS, BETA)
    assert np.min(np.abs(exact)) < 1e-45 and np.max(np.abs(exact)) < 1e-30
    for kernel in (kernels.Centred(), kernels.Centred(2, 2), "auto"):
        got = model_angle_velocity(kernel)
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=0)
        assert np.all(np.sign(got) == np.sign(exact))


def test_the_mean_then_project_form_is_swamped_by_round_off():
    # The check above has teeth: with Dense (and Tiled) the tiny forces are lost in the
    # round-off of the weighted mean (zeroed, or replaced by ~1e-17 noise of any sign).
    exact = angle_velocity(THETAS, BETA)
    got = model_angle_velocity("dense")
    assert np.max(np.abs(got - exact) / np.abs(exact)) >= 0.99


@pytest.mark.parametrize("beta", [0.5, 5.0, 50.0])
def test_centred_equals_dense_at_ordinary_beta(getkey, beta):
    X = mf.uniform_sphere(getkey(), 60, 3)
    for attention in ("usa", "sa"):
        model = mf.MeanField(beta, attention=attention, rescaled_time=True)
        v0 = model.with_kernel("dense").velocity(X)
        v = model.with_kernel(kernels.Centred(16, 32)).velocity(X)
        np.testing.assert_allclose(v, v0, rtol=1e-11, atol=1e-13 * float(jnp.max(jnp.abs(v0))))
