"""Geometry of S^{d-1}: property tests with hypothesis."""

import hypothesis.extra.numpy as hnp
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meanfield as mf

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def unit_rows(draw, n, d):
    Z = draw(hnp.arrays(np.float64, (n, d), elements=finite))
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    Z = np.where(norms > 1e-3, Z, np.eye(1, d))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


@st.composite
def points_and_vectors(draw):
    d = draw(st.integers(2, 6))
    n = draw(st.integers(1, 5))
    X = unit_rows(draw, n, d)
    V = draw(hnp.arrays(np.float64, (n, d), elements=finite))
    return X, V


@settings(max_examples=50, deadline=None)
@given(points_and_vectors())
def test_projection_is_tangent_and_idempotent(xv):
    X, V = xv
    P = mf.project(X, V)
    np.testing.assert_allclose(np.sum(np.asarray(P) * X, axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(mf.project(X, P), P, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(points_and_vectors(), st.floats(0.0, 3.0))
def test_exp_map_stays_on_sphere_and_travels_its_length(xv, length):
    X, V = xv
    T = np.asarray(mf.project(X, V))
    norms = np.linalg.norm(T, axis=1, keepdims=True)
    T = np.where(norms > 1e-6, T / np.maximum(norms, 1e-300) * length, 0.0)
    Y = mf.exp_map(X, T)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1, atol=1e-12)
    dist = mf.geodesic_distance(X, Y)
    np.testing.assert_allclose(dist, np.linalg.norm(T, axis=1), atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(points_and_vectors())
def test_log_map_inverts_exp_map(xv):
    X, V = xv
    T = np.asarray(mf.project(X, V))
    norms = np.linalg.norm(T, axis=1, keepdims=True)
    T = T / np.maximum(norms, 1e-12) * np.minimum(norms, 2.5)  # stay inside the cut locus
    Y = mf.exp_map(X, T)
    np.testing.assert_allclose(mf.sphere.log_map(X, Y), T, atol=1e-8)


@settings(max_examples=50, deadline=None)
@given(points_and_vectors())
def test_geodesic_distance_matches_arccos_and_is_symmetric(xv):
    X, _ = xv
    Y = np.roll(X, 1, axis=0)
    dist = np.asarray(mf.geodesic_distance(X, Y))
    np.testing.assert_allclose(dist, mf.geodesic_distance(Y, X), atol=1e-14)
    cos = np.clip(np.sum(X * Y, axis=1), -1, 1)
    np.testing.assert_allclose(np.cos(dist), cos, atol=1e-12)
    assert np.all((dist >= 0) & (dist <= np.pi + 1e-12))


def test_geodesic_endpoints_and_midpoint(getkey):
    x, y = mf.uniform_sphere(getkey(), 2, 4)
    pts = mf.sphere.geodesic(x, y, jnp.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(pts[0], x, atol=1e-12)
    np.testing.assert_allclose(pts[2], y, atol=1e-12)
    half = mf.geodesic_distance(x, y) / 2
    np.testing.assert_allclose(mf.geodesic_distance(x, pts[1]), half, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3, 10])
def test_uniform_sphere_is_on_sphere_and_isotropic(getkey, d):
    X = mf.uniform_sphere(getkey(), 20_000, d)
    assert X.shape == (20_000, d)
    np.testing.assert_allclose(jnp.linalg.norm(X, axis=1), 1, atol=1e-12)
    # E[x] = 0 and E[x x^T] = I / d; 5-sigma Monte Carlo tolerance.
    np.testing.assert_allclose(X.mean(0), 0, atol=5 / np.sqrt(20_000))
    np.testing.assert_allclose(X.T @ X / 20_000, np.eye(d) / d, atol=5 / np.sqrt(20_000))


def test_uniform_sphere_dtype_and_bad_sizes(getkey):
    assert mf.uniform_sphere(getkey(), 3, 2, dtype=jnp.float32).dtype == jnp.float32
    with pytest.raises(ValueError, match="`d`"):
        mf.uniform_sphere(getkey(), 3, 1)
    with pytest.raises(ValueError, match="`n`"):
        mf.uniform_sphere(getkey(), 0, 3)


def test_circle_angle_round_trip():
    theta = jnp.linspace(-3, 3, 13)
    np.testing.assert_allclose(
        mf.sphere.circle_angles(mf.angles_to_circle(theta)), theta, atol=1e-14
    )


def test_uniform_sphere_keys_are_explicit():
    a = mf.uniform_sphere(jr.PRNGKey(0), 5, 3)
    b = mf.uniform_sphere(jr.PRNGKey(0), 5, 3)
    c = mf.uniform_sphere(jr.PRNGKey(1), 5, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_leading_coordinate_axis_equals_the_last(getkey):
    # The lanes layout (d, n, systems) keeps the coordinates on axis 0 (summed plane by
    # plane); the result is the transposed last-axis result, to rounding.
    sp = mf.sphere
    for d in (2, 3, 12):
        x = sp.retract(jr.normal(getkey(), (7, 5, d)))
        v = sp.project(x, 0.3 * jr.normal(getkey(), (7, 5, d)))
        y = 2.0 * x + v  # off the sphere
        first = lambda a: jnp.moveaxis(a, -1, 0)
        last = lambda a: jnp.moveaxis(a, 0, -1)
        np.testing.assert_allclose(last(sp.retract(first(y), 0)), sp.retract(y), atol=1e-15)
        np.testing.assert_allclose(
            last(sp.exp_map(first(x), first(v), 0)), sp.exp_map(x, v), atol=1e-15
        )
        np.testing.assert_allclose(jnp.linalg.norm(sp.retract(first(y), 0), axis=0), 1.0)
