"""Configurations with closed forms shared by the critical-point tests: regular k-gons on
the circle, the regular simplex on S^2, and the flows that end at critical points.

Notation: phi_mu(y) = (s / beta) sum_j m_j e^{beta <y, x_j>} + v(y)/2 and
f(x_1..x_k) = F_s[sum m_i delta_{x_i}]. On S^1, with x_j = (cos t_j, sin t_j), the second
derivative of e^{beta cos(theta - t)} in theta is e^{beta c}(beta s^2 - c) with
c = cos(theta - t), s = sin(theta - t); it is negative exactly for |theta - t| below the
concavity angle of the kernel.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import meanfield as mf


def polygon(k, offset=0.3):
    return mf.angles_to_circle(offset + 2 * jnp.pi * jnp.arange(k) / k)


SIMPLEX_3D = jnp.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1.0]]) / jnp.sqrt(3.0)


def circle_splitting(k, beta, sign):
    """Closed form of the splitting Hessian at every atom of the equal-mass k-gon (d = 2)."""
    u = 2 * np.pi * np.arange(k) / k
    c, s = np.cos(u), np.sin(u)
    return sign * np.mean(np.exp(beta * c) * (beta * s**2 - c))


def flow(model, X, steps, dt=0.1):
    return mf.integrate(model, X, dt=dt, steps=steps).final


def paper_model(beta=5.0, activation="gelu"):
    a = mf.angles_to_circle(jnp.array([0.4, 2.1]))
    p = mf.Perceptron(a, jnp.zeros(2), jnp.array([0.9, -1.3]), activation)
    return mf.MeanField(beta, sign=-1, perceptron=p, shift_kernel=True)
