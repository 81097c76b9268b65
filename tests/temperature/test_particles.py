"""Score rows of particle systems and their beta*_n against the sphere law."""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from meanfield.temperature import (
    critical_beta,
    critical_beta_of_particles,
    predicted_critical_beta,
    score_rows,
)


def _uniform_sphere(key, n, d):
    g = jr.normal(key, (n, d))
    return g / jnp.linalg.norm(g, axis=-1, keepdims=True)


def test_score_rows_and_particles(getkey):
    X = _uniform_sphere(getkey(), 50, 3)
    rows = score_rows(X, 2.0)
    assert rows.shape == (50, 49)
    G = 2.0 * X @ X.T
    np.testing.assert_allclose(rows[4], np.delete(np.asarray(G[4]), 4), rtol=1e-12)
    assert score_rows(X, include_self=True).shape == (50, 50)
    np.testing.assert_allclose(
        critical_beta_of_particles(X, block=16), critical_beta(score_rows(X)), rtol=1e-10
    )


def test_particles_follow_sphere_law(getkey):
    """Uniform points on S^2: median per-query beta* / law(n - 1, d = 3) within 15% at n = 3000."""
    n, d = 3000, 3
    X = _uniform_sphere(getkey(), n, d)
    b = critical_beta_of_particles(X)
    ratio = jnp.median(b) / predicted_critical_beta("sphere_cosine", n - 1, d=d)
    assert 0.85 < float(ratio) < 1.15
