"""progress=True: the same results, a step line on stderr that reaches the last step, and
the chord speed it shows is the velocity to O(dt)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf

# private: the report cap and the host-side meter are what is under test
from meanfield.integrate._progress import MAX_REPORTS, StepMeter, reports_for


def _model():
    return mf.MeanField(4.0, sign=1, attention="sa")


def _lines(err: str) -> list[str]:
    return [line for line in err.replace("\r", "\n").splitlines() if "step" in line]


def test_integrate_with_progress_matches_and_reports_every_step_count(capsys):
    X0 = mf.uniform_sphere(jax.random.PRNGKey(0), 16, 2)
    kw = dict(dt=0.05, steps=400, save_every=100)
    quiet = mf.integrate(_model(), X0, **kw)
    assert capsys.readouterr().err == ""
    loud = mf.integrate(_model(), X0, **kw, progress=True)
    np.testing.assert_array_equal(np.asarray(loud.xs), np.asarray(quiet.xs))
    lines = _lines(capsys.readouterr().err)
    assert lines and lines[-1].startswith("integrate  step 400/400 (100.0%)  t = 20")
    steps = [int(line.split("step ")[1].split("/")[0]) for line in lines]
    assert steps == sorted(steps)


def test_chord_speed_in_the_report_is_the_max_speed():
    """The reported speed max_i |x_i(k) - x_i(k-1)| / dt against max_i |v_i| at step k-1."""
    seen = []

    class Spy(StepMeter):
        def update(self, step, t, speed):
            seen.append((step, t, speed))

    X0 = mf.uniform_sphere(jax.random.PRNGKey(1), 16, 2)
    model, dt = _model(), 1e-3
    progress = importlib.import_module("meanfield.integrate._progress")
    original = progress.StepMeter
    progress.StepMeter = Spy
    try:
        traj = mf.integrate(model, X0, dt=dt, steps=10, save_every=10, progress=True)
    finally:
        progress.StepMeter = original
    step, t, speed = seen[-1]
    assert step == 10 and t == pytest.approx(10 * dt)
    before = mf.integrate(model, X0, dt=dt, steps=9).final
    v = jnp.max(jnp.linalg.norm(model.velocity(before), axis=-1))
    assert speed == pytest.approx(float(v), rel=1e-2)
    assert traj.final.shape == (16, 2)


def test_integrate_until_and_ensemble_report(capsys):
    X0 = mf.uniform_sphere(jax.random.PRNGKey(0), 16, 2)
    res = mf.integrate_until(_model(), X0, dt=0.1, tol=1e-3, max_steps=5000, progress=True)
    last = _lines(capsys.readouterr().err)[-1]
    assert last.startswith(f"integrate_until  step {int(res.steps)}/5000")
    assert f"max speed {float(res.max_speed):.2e}" in last
    kw = dict(n=8, d=2, seeds=3, dt=0.1, steps=40, save_every=20, betas=[1.0, 2.0])
    quiet = mf.ensemble(_model(), jax.random.PRNGKey(2), **kw)
    loud = mf.ensemble(_model(), jax.random.PRNGKey(2), **kw, progress=True)
    np.testing.assert_array_equal(np.asarray(loud.xs), np.asarray(quiet.xs))
    assert loud.xs.shape == (2, 3, 3, 8, 2) and loud.ts.shape == (2, 3, 3)
    last = _lines(capsys.readouterr().err)[-1]
    assert last.startswith("ensemble of 6  step 40/40")


def test_reports_are_capped_and_land_on_checks():
    assert reports_for(False, 10**6) is None
    r = reports_for(True, 200_000, 10)
    assert r.every % 10 == 0 and 200_000 // r.every <= MAX_REPORTS
    assert reports_for(True, 7).every == 1
