"""Clustering particles into atoms: planted clusters, tolerance semantics, invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meanfield as mf
from meanfield.atoms import cluster, cluster_count, cluster_padded, largest_cluster_mass


def planted(key, k, d, n, spread):
    """n particles around k random centres (labels returned), angular noise ~ spread."""
    kc, kl, kn = jax.random.split(key, 3)
    C = mf.uniform_sphere(kc, k, d)
    lab = jax.random.randint(kl, (n,), 0, k)
    X = mf.retract(C[lab] + spread * jax.random.normal(kn, (n, d)))
    return C, np.asarray(lab), X


def test_planted_clusters_are_recovered(getkey):
    C, lab, X = planted(getkey(), 5, 3, 400, 1e-3)
    m = jax.random.uniform(getkey(), (400,)) + 0.1
    m = m / m.sum()
    atoms = cluster(X, m, tol=0.05)
    assert int(atoms.count) == 5
    assert atoms.locations.shape == (5, 3) and atoms.masses.shape == (5,)
    expected = np.array([float(m[lab == j].sum()) for j in range(5)])
    np.testing.assert_allclose(np.sort(atoms.masses), np.sort(expected), rtol=1e-12)
    assert np.all(np.diff(atoms.masses) <= 0)  # sorted by decreasing mass
    # each atom's location is the normalised weighted mean of its members, near a centre
    for a in range(5):
        members = atoms.labels == a
        mean = (m[members][:, None] * X[members]).sum(0)
        np.testing.assert_allclose(atoms.locations[a], mean / jnp.linalg.norm(mean), atol=1e-12)
        assert float(jnp.max(C @ atoms.locations[a])) > 1 - 1e-4
    assert float(atoms.max_diameter) < 0.02
    np.testing.assert_allclose(atoms.largest_mass, expected.max(), rtol=1e-12)


def test_tolerance_is_an_angle_and_linkage_is_single():
    # Two points at angle 0.1: linked iff tol >= 0.1.
    X = mf.angles_to_circle(jnp.array([0.0, 0.1]))
    assert int(cluster(X, tol=0.1 + 1e-6).count) == 1
    assert int(cluster(X, tol=0.1 - 1e-6).count) == 2
    # A chain with gaps 0.01 spanning 1 rad is one atom of diameter 1 (single linkage).
    perm = np.random.default_rng(0).permutation(101)
    chain = mf.angles_to_circle(jnp.linspace(0.0, 1.0, 101)[perm])
    atoms = cluster(chain, tol=0.0101)
    assert int(atoms.count) == 1
    np.testing.assert_allclose(atoms.diameters[0], 1.0, atol=1e-7)
    assert int(cluster(chain, tol=1e-3).count) == 101
    assert int(cluster(chain, tol=4.0).count) == 1


@settings(max_examples=8, deadline=None)
@given(
    centres=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    tol=st.floats(0.05, 0.5),
)
def test_partition_is_permutation_invariant_and_mass_preserving(centres, seed, tol):
    key = jax.random.PRNGKey(seed)
    _, _, X = planted(key, centres, 3, 24, 0.05)
    m = jax.random.uniform(jax.random.fold_in(key, 1), (24,)) + 0.01
    m = m / m.sum()
    perm = np.random.default_rng(seed).permutation(24)
    a, b = cluster(X, m, tol=tol), cluster(X[perm], m[perm], tol=tol)
    assert int(a.count) == int(b.count)
    np.testing.assert_allclose(float(a.masses.sum()), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.sort(a.masses), np.sort(b.masses), rtol=1e-12)
    # same partition: i ~ j in one labelling iff in the other
    la, lb = np.asarray(a.labels)[perm], np.asarray(b.labels)
    assert np.array_equal(la[:, None] == la[None, :], lb[:, None] == lb[None, :])
    # every pair closer than tol shares an atom (connected components)
    G = np.asarray(X @ X.T)
    linked = np.cos(tol) + 1e-12 <= G
    lab = np.asarray(a.labels)
    assert np.all((lab[:, None] == lab[None, :])[linked])


def test_jit_and_vmap_friendly(getkey):
    _, _, X = planted(getkey(), 3, 3, 64, 1e-4)
    Xs = jnp.stack([X, mf.uniform_sphere(getkey(), 64, 3)])
    m = jnp.full((64,), 1 / 64)
    counts = jax.jit(jax.vmap(lambda Y: cluster_padded(Y, m, 0.01).count))(Xs)
    assert int(counts[0]) == 3 and int(counts[1]) > 3
    assert int(cluster_count(X, tol=0.01)) == 3
    np.testing.assert_allclose(float(largest_cluster_mass(X, m, tol=4.0)), 1.0)
    # tol traced: no recompilation needed for a sweep over tol
    sweep = jax.jit(jax.vmap(lambda t: cluster_padded(X, m, t).count))(jnp.array([1e-6, 0.1, 4.0]))
    assert list(np.asarray(sweep)) == [64, 3, 1]


def test_ten_thousand_particles_memory_blockwise(getkey):
    _, lab, X = planted(getkey(), 7, 3, 10_000, 1e-3)
    atoms = cluster(X, tol=0.05)
    assert int(atoms.count) == 7
    np.testing.assert_allclose(np.sort(atoms.masses), np.sort(np.bincount(lab) / 10_000))


def test_float32_default(getkey):
    X = mf.retract(jnp.array([[1.0, 0.0, 0.0], [1.0, 1e-3, 0.0], [0.0, 1.0, 0.0]], jnp.float32))
    atoms = cluster(X, tol=0.01)
    assert atoms.locations.dtype == jnp.float32
    assert int(atoms.count) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tol=0.0), "tol"),
        (dict(tol=-1.0), "tol"),
        (dict(m=jnp.array([0.5, 0.6, -0.1])), "non-negative"),
        (dict(m=jnp.array([0.5, 0.6, 0.1])), "sum to 1"),
        (dict(X=jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])), "unit sphere"),
        (dict(X=jnp.zeros((0, 3))), "at least one point"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(X=mf.angles_to_circle(jnp.array([0.0, 1.0, 2.0])), m=None, tol=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cluster(args["X"], args["m"], tol=args["tol"])
