"""Chunked and checkpointed integration give the bits of one `integrate` call; a killed
checkpointed run resumes (`integrate_checkpointed` again, `meanfield resume`) to the same
final state, bit for bit, as the uninterrupted run."""

import os
import subprocess
import sys

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield.runs import _checkpoint as checkpointing  # to count its integrate calls
from meanfield.runs import _folder as _runfolder  # fault injection
from meanfield.runs import compare_runs, load_run
from meanfield.runs._execute import checkpoint_dir  # where a run's checkpoint lives
from meanfield.runs._workflow import integrate_chunked  # the chunked loop itself
from meanfield.runs.cli import main


def _model(getkey, attention="sa", d=3):
    p = mf.Perceptron.random(getkey(), d, activation="tanh")
    return mf.MeanField(3.0, attention=attention, perceptron=p)


@pytest.mark.parametrize(
    "method, attention", [("euler", "sa"), ("rk4", "usa"), ("geodesic", "sa"), ("euler", "usa")]
)
def test_chunked_integration_is_bit_identical_to_one_call(method, attention, getkey):
    model = _model(getkey, attention)
    X0 = mf.uniform_sphere(getkey(), 9, 3)
    m = jr.dirichlet(getkey(), jnp.ones(9))
    full = mf.integrate(model, X0, dt=0.05, steps=24, save_every=2, method=method, m=m)
    for chunks in (3, 12):  # chunks of 4 saves, and of 1
        traj = integrate_chunked(
            model, X0, dt=0.05, steps=24, save_every=2, method=method, m=m, max_chunks=chunks
        )
        assert np.array_equal(traj.xs, full.xs) and np.array_equal(traj.ts, full.ts), chunks
        assert traj.xs.dtype == full.xs.dtype == jnp.float64


def test_integrate_checkpointed_resumes_bit_for_bit(tmp_path, getkey, monkeypatch):
    model = _model(getkey)
    X0 = mf.uniform_sphere(getkey(), 7, 3)
    key = jr.PRNGKey(3)
    full = mf.integrate(model, X0, dt=0.1, steps=30, save_every=3, method="rk4")
    kw = dict(dt=0.1, steps=30, save_every=3, method="rk4", key=key, checkpoint_every=6)
    ck = tmp_path / "ck"
    monkeypatch.setenv(_runfolder.FAULT_ENV, "checkpoint=raise@2")  # dies after 12 steps
    monkeypatch.setattr(_runfolder, "_HITS", {})
    with pytest.raises(RuntimeError, match="fault injected"):
        mf.integrate_checkpointed(model, X0, checkpoint_dir=ck, **kw)
    monkeypatch.delenv(_runfolder.FAULT_ENV)
    state = mf.read_checkpoint(ck)
    assert (state.step, state.steps, state.xs.shape) == (12, 30, (5, 7, 3))
    assert np.array_equal(state.X, full.xs[4]) and np.array_equal(state.key, np.asarray(key))
    calls, orig = [], checkpointing.integrate

    def counted(*a, **k):
        calls.append(k["steps"])
        return orig(*a, **k)

    monkeypatch.setattr(checkpointing, "integrate", counted)
    traj = mf.integrate_checkpointed(model, X0, checkpoint_dir=ck, **kw)
    assert calls == [6, 6, 6]  # resumed at step 12: only the remaining 18 steps were run
    assert np.array_equal(traj.xs, full.xs) and np.array_equal(traj.ts, full.ts)
    assert mf.read_checkpoint(ck).done
    # a checkpoint of another integration is refused, naming what differs
    with pytest.raises(ValueError, match="dt differ"):
        mf.integrate_checkpointed(model, X0, checkpoint_dir=ck, **{**kw, "dt": 0.2})
    with pytest.raises(ValueError, match="model, X0, m or key"):
        mf.integrate_checkpointed(model, X0 * -1.0, checkpoint_dir=ck, **kw)
    with pytest.raises(ValueError, match="multiple of `save_every`"):
        mf.integrate_checkpointed(
            model, X0, checkpoint_dir=tmp_path / "x", **{**kw, "checkpoint_every": 4}
        )
    with pytest.raises(ValueError, match="no checkpoint"):
        mf.read_checkpoint(tmp_path / "nothing")


SIM = ["simulate", "--n", "8", "--d", "2", "--beta", "3", "--steps", "40", "--save-every", "5"]
SIM += ["--no-plots", "--quiet"]


def _killed_simulate(out, extra=()):
    env = {**os.environ, _runfolder.FAULT_ENV: "checkpoint=kill@2", "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-m", "meanfield", *SIM, "--checkpoint-every", "10", *extra]
    return subprocess.Popen(
        [*argv, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_killed_run_resumes_to_the_uninterrupted_bits(tmp_path, capsys):
    fresh, over = tmp_path / "fresh", tmp_path / "over"
    mf.save_run(over, {"xs": np.zeros(2)}, {"old": True})
    procs = [_killed_simulate(fresh), _killed_simulate(over, ["--overwrite"])]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == -9, err.decode()[-2000:]
    assert not fresh.exists()  # nothing half-written in place
    assert load_run(over).results == {"old": True}  # the previous run, intact
    assert mf.read_checkpoint(checkpoint_dir(fresh)).step == 20
    # a new run into the folder is refused while the checkpoint is there
    assert main([*SIM, "--out", str(fresh)]) == 2
    assert "meanfield resume" in capsys.readouterr().err
    full = tmp_path / "full"
    assert main([*SIM, "--out", str(full)]) == 0
    for out in (fresh, over):
        assert main(["resume", str(out)]) == 0
        captured = capsys.readouterr()
        assert "got to step 20 of 40 (50%)" in captured.err, captured.err
        assert compare_runs(full, out) == [] and compare_runs(out, full) == []
        assert load_run(out).results["t_final"] == load_run(full).results["t_final"]
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]
        assert leftovers == []
    assert main(["resume", str(fresh)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "never")]) == 2
    assert main([*SIM, "--checkpoint-every", "7", "--out", str(tmp_path / "x")]) == 2
    assert "multiple of save_every=5" in capsys.readouterr().err
