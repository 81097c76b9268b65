"""Convergence orders against an independent reference: the relative angle of two
particles of mass 1/2 on the circle solves a scalar ODE, integrated here by SciPy.

USA, sign s: theta' = -s e^{beta cos theta} sin theta (see docs/design.md), so every
method is checked against a reference that shares no code with meanfield's steppers
(the order test in test_single.py uses RK4 at a fine step as its reference, which a
broken RK4 would corrupt for every method)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import meanfield as mf

BETA, SIGN, THETA0, T = 1.5, 1.0, 2.0, 1.0


def reference_angle(t: float) -> float:
    rhs = lambda _, th: -SIGN * np.exp(BETA * np.cos(th)) * np.sin(th)
    sol = solve_ivp(rhs, (0.0, t), [THETA0], method="DOP853", rtol=1e-13, atol=1e-15)
    return float(sol.y[0, -1])


def final_angle(method: str, steps: int) -> float:
    X0 = mf.angles_to_circle(jnp.array([0.0, THETA0]))
    model = mf.MeanField(BETA, sign=SIGN, attention="usa")
    X = mf.integrate(model, X0, dt=T / steps, steps=steps, method=method).final
    return float(mf.geodesic_distance(X[0], X[1]))


@pytest.mark.parametrize(
    "method, order, step_counts",
    [
        ("euler", 1, [32, 64, 128, 256]),
        ("geodesic", 1, [32, 64, 128, 256]),
        ("rk4", 4, [8, 16, 32]),
    ],
)
def test_order_against_the_scalar_ode(method, order, step_counts):
    ref = reference_angle(T)
    errors = [abs(final_angle(method, s) - ref) for s in step_counts]
    slopes = -np.diff(np.log(errors)) / np.diff(np.log(step_counts))
    assert np.all(np.abs(slopes - order) < 0.2), (errors, slopes)


def test_rk4_error_constant_is_small():
    """RK4 at 32 steps is within 2e-7 of the exact angle (an order-2 or order-1 scheme
    with the same slope test but a wrong constant would not be)."""
    assert abs(final_angle("rk4", 32) - reference_angle(T)) < 2e-7
