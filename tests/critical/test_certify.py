"""`mf.certify`: the flow, clustering, Newton and stability pipeline in one call."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.critical import certify_atoms, newton_refine


def _antipodal(n=8):
    """Two antipodal half-mass clusters on the circle: stationary for every SA/USA model
    without perceptron (each particle sees itself and its antipode), and a saddle of the
    attractive energy (moving the clusters together increases it)."""
    X = jnp.tile(jnp.array([[1.0, 0.0], [-1.0, 0.0]]), (n // 2, 1))
    return X


def test_saddle_is_reported_with_a_hint_and_perturb_escapes_it():
    model = mf.MeanField(3.0, sign=1, attention="usa")
    stuck = mf.certify(model, _antipodal(), tol=1e-6, max_steps=4000)
    assert stuck.report.stationary and not stuck.stable
    assert not stuck.report.transport_stable and len(stuck.masses) == 2
    np.testing.assert_allclose(stuck.masses, [0.5, 0.5])
    assert "saddle" in stuck.hint and "perturb=" in stuck.hint
    escaped = mf.certify(
        model, _antipodal(), tol=1e-6, max_steps=4000, perturb=3, key=jax.random.PRNGKey(1)
    )
    assert escaped.stable and escaped.perturbations >= 1 and escaped.hint == ""
    np.testing.assert_allclose(escaped.masses, [1.0])  # attraction: one atom takes all


def test_a_splitting_unstable_single_particle_is_named_and_not_kicked():
    """A one-particle atom cannot split under a particle flow, so the hint says so (and
    perturbing is skipped) instead of promising that kicks help."""
    p = mf.Perceptron.random(jax.random.PRNGKey(0), 2, activation="gelu")
    model = mf.MeanField(5.0, sign=-1, attention="usa", perceptron=p, shift_kernel=True)
    X0 = mf.uniform_sphere(jax.random.PRNGKey(1), 64, 2)
    cert = mf.certify(model, X0, dt=0.2, perturb=2)
    assert cert.report.stationary and cert.report.transport_stable
    assert not cert.report.splitting_stable and not cert.stable
    assert "one particle" in cert.hint and cert.perturbations == 0
    sizes = np.bincount(np.asarray(cert.atoms.labels))
    worst = int(np.argmax(cert.report.splitting_eigenvalues.max(axis=1)))
    assert sizes[worst] == 1 and f"[{worst}]" in cert.hint
    np.testing.assert_allclose(cert.masses[worst], 1 / 64)


def test_certify_equals_the_pipeline_by_hand_and_runs_in_float64():
    p = mf.Perceptron.random(jax.random.PRNGKey(1), 2, activation="gelu")
    model = mf.MeanField(4.0, sign=-1, attention="usa", perceptron=p, shift_kernel=True)
    X0 = mf.uniform_sphere(jax.random.PRNGKey(0), 48, 2)
    with jax.enable_x64(False):  # the user's default: certify still computes in float64
        cert = mf.certify(model, X0.astype(jnp.float32), max_steps=40_000, tol=1e-6)
    assert cert.locations.dtype == np.float64 and cert.dtype == "float64"
    assert cert.flow.converged and cert.cluster_tol == pytest.approx(0.1 / 2)
    res = mf.integrate_until(model, X0, dt=0.1, tol=1e-6, max_steps=40_000, check_every=100)
    atoms = mf.cluster(res.final, beta=4.0)
    cp = newton_refine(model, atoms.locations, atoms.masses / atoms.masses.sum())
    rep = mf.stability_report(model, cp.X, atoms.masses / atoms.masses.sum())
    np.testing.assert_allclose(cert.masses, np.asarray(atoms.masses), atol=1e-6)
    np.testing.assert_allclose(cert.locations, np.asarray(cp.X), atol=1e-5)
    assert cert.stable == rep.stable and cert.report.stationary
    again = certify_atoms(model, cert.locations, cert.masses)
    assert again.stable == cert.stable and again.newton_displacement < 1e-8
    assert "atoms" in repr(cert) and cert.as_dict()["flow_converged"]


def test_float32_warns_and_bad_arguments_are_named():
    model = mf.MeanField(2.0, sign=1, attention="sa")
    X0 = mf.uniform_sphere(jax.random.PRNGKey(0), 8, 2)
    with pytest.warns(UserWarning, match="float32"):
        cert = mf.certify(model, X0, dtype="float32", max_steps=2000)
    assert cert.locations.dtype == np.float32 and cert.dtype == "float32"
    for kw, name in [
        ({"perturb": -1}, "perturb"),
        ({"dtype": "float16"}, "dtype"),
        ({"cluster_tol": 0.0}, "cluster_tol"),
        ({"newton_iter": 1.5}, "newton_iter"),
        ({"perturb_scale": -1.0}, "perturb_scale"),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            mf.certify(model, X0, **kw)
    with pytest.raises(ValueError, match="X0"):
        mf.certify(model, 2 * X0)


def test_one_cluster_tolerance_default():
    X = mf.uniform_sphere(jax.random.PRNGKey(3), 64, 3)
    with pytest.raises(ValueError, match="`tol`.*`beta`"):
        mf.cluster(X)
    a, b = mf.cluster(X, beta=9.0), mf.cluster(X, tol=0.1 / 3)
    assert int(a.count) == int(b.count)
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    assert float(mf.atoms.default_tolerance(0.01)) == 0.2  # capped at small beta
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(mf.atoms.cluster_count(X, beta=1e6)) == 64  # tiny tolerance: singletons
