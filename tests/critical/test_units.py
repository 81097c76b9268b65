"""Stationarity residual: non-stationary random states, the field options and the units."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.critical import (
    stability_report,
    stationarity_residual,
)


def test_random_configuration_is_not_stationary(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="gelu")
    model = mf.MeanField(2.0, sign=-1, perceptron=p)
    X = mf.uniform_sphere(getkey(), 6, 3)
    res = float(stationarity_residual(model, X))
    np.testing.assert_allclose(res, float(jnp.max(jnp.linalg.norm(model.velocity(X), axis=1))))
    rep = stability_report(model, X)
    assert res > 1e-2 and not rep.stationary and not rep.stable


def test_residual_field_options_and_units(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="gelu")
    X = mf.uniform_sphere(getkey(), 6, 3)
    usa = mf.MeanField(3.0, sign=-1, perceptron=p)
    sa = mf.MeanField(3.0, sign=-1, attention="sa", perceptron=p)
    np.testing.assert_allclose(stationarity_residual(sa, X), stationarity_residual(usa, X))
    v_sa = jnp.max(jnp.linalg.norm(sa.velocity(X), axis=1))
    np.testing.assert_allclose(stationarity_residual(sa, X, field="model"), v_sa)
    for kw in (dict(shift_kernel=True), dict(rescaled_time=True)):
        mdl = mf.MeanField(3.0, sign=-1, perceptron=p, **kw)
        v = jnp.max(jnp.linalg.norm(mdl.velocity(X), axis=1))
        np.testing.assert_allclose(stationarity_residual(mdl, X), v, rtol=1e-12)
    gen = mf.MeanField(3.0, attention="general")
    with pytest.raises(ValueError, match="no energy"):
        stationarity_residual(gen, X)
