"""Mean-field limit study: coarse-grained atoms and the 1/sqrt(n) shrinking of seed spread."""

import jax
import jax.numpy as jnp
import numpy as np

import meanfield as mf
from meanfield.studies.limit import cell_atoms, first_merge_time, run_study


def test_cell_atoms_agree_with_exact_clustering(getkey):
    # Three tight planted clusters of masses 1/2, 1/3, 1/6 on S^2.
    centres = mf.uniform_sphere(getkey(), 3, 3)
    sizes = [300, 200, 100]
    noise = 1e-3 * jax.random.normal(getkey(), (600, 3))
    X = mf.retract(jnp.repeat(centres, jnp.array(sizes), axis=0, total_repeat_length=600) + noise)
    masses = cell_atoms(X, tol=0.05)
    exact = mf.cluster(X, tol=0.05).masses
    np.testing.assert_allclose(masses, exact, atol=1e-12)
    np.testing.assert_allclose(masses, [0.5, 1 / 3, 1 / 6], atol=1e-12)


def test_first_merge_time():
    ts = np.arange(6.0)
    assert first_merge_time(ts, [1, 4, 4, 3, 3, 2]) == 3.0
    assert np.isnan(first_merge_time(ts, [1, 2, 3, 3, 3, 3]))


def test_energy_spread_over_seeds_shrinks_with_n():
    result = run_study(
        {2: [32, 2048]}, beta=2.0, seeds=4, steps=20, save_every=10, progress=lambda *_: None
    )
    small, large = result["runs"]["d2_n32"], result["runs"]["d2_n2048"]
    assert len(small["energy_mean"]) == 3
    # Fluctuations of the empirical measure are O(1/sqrt(n)): 64x more particles, ~8x less.
    assert large["energy_std"][-1] < small["energy_std"][-1] / 3
    assert np.all(np.isfinite(large["energy_mean"]))
