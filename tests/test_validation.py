"""Bad input gets a clear error naming the argument, before any long computation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meanfield as mf


@pytest.fixture
def X(getkey):
    return mf.uniform_sphere(getkey(), 6, 3)


def test_wrong_shapes(X):
    model = mf.MeanField(1.0)
    with pytest.raises(ValueError, match="`X` must have shape"):
        model.velocity(X[0])
    with pytest.raises(ValueError, match="`X` must have shape"):
        model.velocity(X[None])
    with pytest.raises(ValueError, match="d >= 2"):
        model.velocity(jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="`m` must have shape"):
        model.velocity(X, jnp.ones(5) / 5)
    with pytest.raises(ValueError, match="`perceptron` acts on R\\^4"):
        p = mf.Perceptron.random(jr.PRNGKey(0), 4)
        mf.MeanField(1.0, perceptron=p).velocity(X)
    with pytest.raises(ValueError, match="`Y` has dimension"):
        model.first_variation(jnp.ones((2, 4)) / 2, X)
    with pytest.raises(ValueError, match="`X0` must have shape"):
        mf.integrate(model, X[0], dt=0.1, steps=3)


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-6, 0.5), st.integers(0, 5), st.booleans())
def test_rows_off_the_sphere_are_rejected(eps, row, shrink):
    X = np.tile(np.array([[1.0, 0.0, 0.0]]), (6, 1))
    X[row] *= (1 - eps) if shrink else (1 + eps)
    with pytest.raises(ValueError, match="`X` rows must lie on the unit sphere"):
        mf.MeanField(1.0).velocity(X)


def test_rows_within_tolerance_are_accepted():
    # Tolerance is sqrt(eps): 1.5e-8 in float64, 3.5e-4 in float32.
    X = np.tile(np.array([[1.0, 0.0, 0.0]]), (3, 1)) * (1 + 1e-9)
    assert np.all(np.isfinite(mf.MeanField(1.0).velocity(X)))
    X32 = (np.tile(np.array([[1.0, 0.0, 0.0]]), (3, 1)) * (1 + 1e-4)).astype(np.float32)
    assert np.all(np.isfinite(mf.MeanField(1.0).velocity(X32)))


def test_nan_in_X(X):
    bad = X.at[2, 1].set(jnp.nan)
    with pytest.raises(ValueError, match="`X` contains NaN or inf in 1 row"):
        mf.MeanField(1.0).velocity(bad)
    with pytest.raises(ValueError, match="`X0` contains NaN"):
        mf.integrate(mf.MeanField(1.0), bad, dt=0.1, steps=2)
    with pytest.raises(ValueError, match="`X` contains NaN"):
        mf.MeanField(1.0).energy(bad.at[0, 0].set(jnp.inf))


@pytest.mark.parametrize(
    "m, match",
    [
        (jnp.array([0.5, 0.5, 0.2, -0.2, 0.0, 0.0]), "non-negative"),
        (jnp.ones(6), "sum to 1"),
        (jnp.array([0.5, jnp.nan, 0.5, 0.0, 0.0, 0.0]), "NaN"),
    ],
)
def test_bad_masses(X, m, match):
    with pytest.raises(ValueError, match=f"`m`.*{match}"):
        mf.MeanField(1.0).velocity(X, m)
    with pytest.raises(ValueError, match=f"`m`.*{match}"):
        mf.integrate(mf.MeanField(1.0), X, m=m, dt=0.1, steps=2)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="`beta`"):
        mf.MeanField(beta)


def test_bad_model_options():
    with pytest.raises(ValueError, match="`sign`"):
        mf.MeanField(1.0, sign=0.5)
    with pytest.raises(ValueError, match="`attention`"):
        mf.MeanField(1.0, attention="softmax")
    with pytest.raises(ValueError, match="`kernel`"):
        mf.MeanField(1.0, kernel="fft")
    with pytest.raises(ValueError, match="attention='general'"):
        mf.MeanField(1.0, value=jnp.eye(3))


def test_bad_integration_arguments(X):
    model = mf.MeanField(1.0)
    with pytest.raises(ValueError, match="`dt`"):
        mf.integrate(model, X, dt=0.0, steps=2)
    with pytest.raises(ValueError, match="`dt`"):
        mf.integrate(model, X, dt=float("nan"), steps=2)
    with pytest.raises(ValueError, match="`steps`"):
        mf.integrate(model, X, dt=0.1, steps=2.5)
    with pytest.raises(ValueError, match="`steps`"):
        mf.integrate(model, X, dt=0.1, steps=0)
    with pytest.raises(ValueError, match="`method`"):
        mf.integrate(model, X, dt=0.1, steps=2, method="leapfrog")
    with pytest.raises(ValueError, match="`tol`"):
        mf.integrate_until(model, X, dt=0.1, tol=-1.0)


def test_nan_inside_jit_is_a_runtime_error(X):
    import equinox as eqx

    model = mf.MeanField(1.0)
    bad = X.at[0, 0].set(jnp.nan)
    with pytest.raises(Exception, match="`X` contains NaN"):
        eqx.filter_jit(model.velocity)(bad)


@pytest.mark.parametrize("beta, dt", [(88.0, 1.0), (80.0, 1e-3)])
def test_step_overflow_is_refused_before_compiling(getkey, beta, dt):
    # float32: e^beta still fits, but |x + dt v|^2 overflows in the retraction, so the first
    # Euler step would produce NaN; the limit is beta < 44.4 - log(dt).
    X = mf.uniform_sphere(getkey(), 128, 3, dtype=jnp.float32)
    limit = 0.5 * np.log(np.finfo(np.float32).max) - np.log(dt)
    with pytest.raises(ValueError, match=f"limit beta < {limit:.1f} for this dt") as err:
        mf.integrate(mf.MeanField(beta, attention="usa"), X, dt=dt, steps=5)
    assert "\n" not in str(err.value)
    # just below the limit the run is finite
    traj = mf.integrate(mf.MeanField(limit - 1.0, attention="usa"), X, dt=dt, steps=5)
    assert np.all(np.isfinite(np.asarray(traj.final)))


def test_blow_up_during_integration_is_an_error_not_a_silent_nan(getkey):
    # A traced beta cannot be checked up front: the integration output check catches it.
    # (float32, 128 points on S^2, beta = 80, dt = 1e-3: |x + dt v|^2 overflows)
    X = mf.uniform_sphere(getkey(), 128, 3, dtype=jnp.float32)
    run = eqx.filter_jit(lambda b: mf.integrate(mf.MeanField(b), X, dt=1e-3, steps=5).xs)
    with pytest.raises(Exception, match="NaN or inf"):
        run(jnp.float32(80.0)).block_until_ready()


def test_an_integer_seed_is_a_key_everywhere_a_key_is_expected():
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(
        np.asarray(mf.uniform_sphere(3, 5, 3)), np.asarray(mf.uniform_sphere(key, 5, 3))
    )
    np.testing.assert_array_equal(
        np.asarray(mf.sample_scores("gaussian", 3, 16)),
        np.asarray(mf.sample_scores("gaussian", key, 16)),
    )
    assert mf.Perceptron.random(np.int64(3), 3).a.shape == (3, 3)
    kw = dict(n=4, d=2, seeds=2, dt=0.1, steps=2)
    model = mf.MeanField(1.0, attention="sa")
    np.testing.assert_array_equal(
        np.asarray(mf.ensemble(model, 3, **kw).xs), np.asarray(mf.ensemble(model, key, **kw).xs)
    )
    assert mf.uniform_sphere(jax.random.key(0), 2, 2).shape == (2, 2)  # typed keys too
    for bad in (1.5, "seed", True, jax.random.split(key, 3)):
        with pytest.raises(ValueError, match="`key` must be a PRNG key"):
            mf.uniform_sphere(bad, 2, 2)


def test_transposed_points_get_a_hint():
    X = mf.uniform_sphere(0, 64, 3)
    with pytest.raises(ValueError, match=r"`X` looks transposed.*pass `X.T`"):
        mf.MeanField(1.0).velocity(X.T)
    with pytest.raises(ValueError, match="rows must lie on the unit sphere"):
        mf.MeanField(1.0).velocity(2 * X)  # not a transpose: the plain message
