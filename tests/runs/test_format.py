"""How runs are written and read: refusal and --overwrite, atomic commits under kill -9,
the folder lock, injected failures, `save_run`, checked reads and the rerun comparison.

Kill tests run `save_run` (the same staging / commit path as the command) in subprocesses
with MEANFIELD_FAULT naming the point where the process SIGKILLs itself.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import meanfield as mf
from meanfield.runs import _folder as _runfolder  # fault injection, locks: folder internals
from meanfield.runs import _format, compare_runs, load_run
from meanfield.runs._format import write_run_files  # the jax-free save path
from meanfield.runs.cli import main
from meanfield.runs.workflows import WORKFLOWS, Workflow

TINY = ["--n", "6", "--d", "2", "--beta", "2", "--steps", "4", "--save-every", "2"]
TINY += ["--no-plots", "--quiet"]

# The save path of `save_run` (RunWriter + write_run_files) without importing JAX: the
# two modules are loaded under a bare `meanfield` package, so a subprocess starts in a
# fraction of a second instead of several.
SAVER = """
import importlib.util, sys, types
from pathlib import Path
import numpy as np
root = Path(sys.argv[4])
pkg = types.ModuleType("meanfield")
pkg.__path__ = [str(root)]
sys.modules["meanfield"] = pkg
runs = types.ModuleType("meanfield.runs")
runs.__path__ = [str(root / "runs")]
sys.modules["meanfield.runs"] = runs
for name in ("runs._folder", "runs._format"):
    path = root / (name.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(f"meanfield.{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[f"meanfield.{name}"] = mod
    spec.loader.exec_module(mod)
from meanfield.runs._folder import RunWriter
from meanfield.runs._format import write_run_files
out, n, overwrite = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
for i in range(int(sys.argv[5])):  # n, n + 1, n, ... (a writer in a loop)
    m = n + i % 2
    with RunWriter(out, overwrite=overwrite) as w:
        write_run_files(w.path, "python", {"n": m}, {"xs": np.full((m, 3), float(m))},
                        {"n": m}, {}, rerunnable=False)
        w.commit()
"""


def _saver(out, n, overwrite, fault=None, exchange=True, repeat=1):
    env = {k: v for k, v in os.environ.items() if k != _runfolder.FAULT_ENV}
    env["JAX_PLATFORMS"] = "cpu"
    if fault:
        env[_runfolder.FAULT_ENV] = fault
    if not exchange:
        env["MEANFIELD_RENAME_EXCHANGE"] = "0"
    root = str(Path(_format.__file__).parent.parent)
    argv = [sys.executable, "-c", SAVER, str(out), str(n), "1" if overwrite else "0", root]
    argv.append(str(repeat))
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _save(out, n, **kw):
    return mf.save_run(out, {"xs": np.full((n, 3), float(n))}, {"n": n}, config={"n": n}, **kw)


def _consistent_n(out):
    """The run in `out` is complete and self-consistent; returns its n."""
    run = load_run(out)
    n = run.config["n"]
    assert run.results["n"] == n and run["xs"].shape == (n, 3) and np.all(run["xs"] == n)
    return n


def _no_leftovers(out):
    siblings = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert siblings == [], siblings


# ----------------------------------------------------------------------------- refusal


def test_existing_folder_refused_then_replaced_whole_with_overwrite(tmp_path, capsys):
    out = tmp_path / "prev"
    assert main(["simulate", *TINY, "--out", str(out)]) == 0
    (out / "trajectory.gif").write_bytes(b"GIF89a stale figure of the previous run")
    before = (out / "arrays.npz").read_bytes()
    capsys.readouterr()
    b3 = ["--beta", "3"]  # same shapes: no new compilation
    assert main(["simulate", *TINY, *b3, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err and err.count("\n") == 1
    assert (out / "arrays.npz").read_bytes() == before  # untouched
    assert main(["simulate", *TINY, *b3, "--overwrite", "--out", str(out)]) == 0
    assert not (out / "trajectory.gif").exists()  # replaced as a whole: no stale files
    run = load_run(out)
    assert run.config["beta"] == 3.0 and (out / "arrays.npz").read_bytes() != before
    _no_leftovers(out)
    # a sweep into the simulate folder is refused too (before anything is computed)
    sweep = ["sweep", "--n", "4", "--seeds", "1", "--betas", "1", "--steps", "2"]
    assert main([*sweep, "--save-every", "1", "--quiet", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and load_run(out).command == "simulate"


def test_overwrite_never_replaces_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["simulate", *TINY, "--overwrite", "--out", str(out)]) == 2
    assert "not a meanfield run folder" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is a fresh one
    _save(empty, 2)
    assert _consistent_n(empty) == 2


def test_rerun_out_refused_unless_overwrite(tmp_path, capsys):
    r1, other = tmp_path / "r1", tmp_path / "other"
    assert main(["simulate", *TINY, "--out", str(r1)]) == 0
    _save(other, 3)
    assert main(["rerun", str(r1), "--out", str(other), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _consistent_n(other) == 3
    assert main(["rerun", str(r1), "--out", str(other), "--quiet", "--overwrite"]) == 0
    assert load_run(other).command == "simulate"
    # the default DIR-rerun: the second rerun is refused as well
    assert main(["rerun", str(r1), "--quiet"]) == 0
    assert main(["rerun", str(r1), "--quiet"]) == 2


def test_checks_come_before_any_computation(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the workflow ran before the checks")

    monkeypatch.setitem(WORKFLOWS, "simulate", Workflow(boom))
    monkeypatch.setitem(WORKFLOWS, "temperature", Workflow(boom))
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["simulate", *TINY, "--out", str(blocker / "out")]) == 2
    assert "--out" in capsys.readouterr().err
    o4 = tmp_path / "o4"
    assert main(["temperature", "--families", "weibull:p=-1", "--out", str(o4)]) == 2
    err = capsys.readouterr().err
    assert "weibull:p=-1" in err and "`p` must be > 0" in err
    assert main(["temperature", "--families", "planted_simplex:rho=2", "--out", str(o4)]) == 2
    assert "rho" in capsys.readouterr().err
    assert not o4.exists()
    existing = tmp_path / "existing"
    _save(existing, 2)
    assert main(["simulate", *TINY, "--out", str(existing)]) == 2
    _no_leftovers(existing)


# ----------------------------------------------------------------------------- atomic


# (point, expected n afterwards, rename exchange available): old run n = 4, new run n = 5
KILLS = [
    ("run-start", 4, True),
    ("save-arrays", 4, True),
    ("save-config", 4, True),
    ("commit-done", 5, True),
    ("commit", 4, False),
    ("commit-moved-old", 5, False),  # rolled forward by the next reader
]


def test_kill_9_at_every_point_of_the_save_leaves_one_complete_run(tmp_path):
    procs = []
    for i, (point, _, exchange) in enumerate(KILLS):
        out = tmp_path / f"k{i}" / "run"
        _save(out, 4)
        procs.append(_saver(out, 5, True, fault=f"{point}=kill", exchange=exchange))
    fresh = tmp_path / "fresh" / "run"
    procs.append(_saver(fresh, 5, False, fault="save-config=kill"))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == -9, err.decode()[-2000:]
    for i, (point, expect, _) in enumerate(KILLS):
        out = tmp_path / f"k{i}" / "run"
        assert _consistent_n(out) == expect, point
        _save(out, 6, overwrite=True)  # the next writer cleans up and succeeds
        assert _consistent_n(out) == 6
        _no_leftovers(out)
    assert not fresh.exists()  # no empty or partial folder for a killed fresh run
    with pytest.raises(ValueError, match="no such run folder"):
        load_run(fresh)
    _save(fresh, 2)
    assert _consistent_n(fresh) == 2
    _no_leftovers(fresh)


def test_an_interrupted_two_rename_swap_is_rolled_forward_by_the_next_writer(tmp_path):
    out = tmp_path / "run"
    _save(out, 4)
    stage = tmp_path / ".run.tmp-1-dead"  # what a kill between the two renames leaves
    stage.mkdir()
    _save(tmp_path / "new" / "run", 5)
    os.rename(tmp_path / "new" / "run", stage / "run")
    os.rename(out, stage / "old")
    with pytest.raises(ValueError, match="already exists"):  # recovered first, so refused
        _save(out, 6)
    assert _consistent_n(out) == 5  # the complete new run, rolled forward
    _no_leftovers(out)
    # an incomplete staging folder (killed while writing) is never moved into place
    shutil.rmtree(out)
    (tmp_path / ".run.tmp-2-dead" / "run").mkdir(parents=True)
    assert not _runfolder.recover(out) and not out.exists()


def test_out_dot_is_the_current_folder_by_name(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    _save(".", 2)
    with pytest.raises(ValueError, match="overwrite=True"):
        _save(".", 3)
    assert _save(".", 3, overwrite=True).path == here
    assert _consistent_n(".") == 3 and _consistent_n(here) == 3  # cwd follows the folder


@pytest.mark.parametrize("point", ["save-arrays", "save-results", "save-config", "commit"])
def test_exception_during_the_save_keeps_the_old_run(point, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _save(out, 4)
    monkeypatch.setenv(_runfolder.FAULT_ENV, f"{point}=raise")
    with pytest.raises(RuntimeError, match="fault injected"):
        _save(out, 5, overwrite=True)
    monkeypatch.delenv(_runfolder.FAULT_ENV)
    assert _consistent_n(out) == 4
    _no_leftovers(out)  # staging removed, lock released


def test_second_writer_fails_fast_while_the_first_holds_the_lock(tmp_path, capsys):
    out = tmp_path / "race"
    first = _saver(out, 5, False, fault="commit=sleep:3")
    lock = _runfolder.lock_path(out)
    deadline = time.time() + 60
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), first.communicate()[1].decode()
    pid = json.loads(lock.read_text())["pid"]
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=f"another meanfield run \\(pid {pid}"):
        _save(out, 7, overwrite=True)
    code = main(["simulate", *TINY, "--overwrite", "--out", str(out)])
    assert time.perf_counter() - t0 < 5  # failed fast, nothing computed
    err = capsys.readouterr().err
    assert code == 2 and "another meanfield run" in err and err.count("\n") == 1
    _, serr = first.communicate(timeout=120)
    assert first.returncode == 0, serr.decode()
    assert _consistent_n(out) == 5  # the first run, not a mix
    _no_leftovers(out)


@pytest.mark.parametrize("exchange", [True, False])
def test_reader_sees_one_whole_run_while_a_writer_overwrites_it(exchange, tmp_path):
    out = tmp_path / "run"
    _save(out, 4)
    writer = _saver(out, 4, True, repeat=40, exchange=exchange)
    seen = []
    while writer.poll() is None:
        seen.append(_consistent_n(out))  # never a mix, never missing
    _, err = writer.communicate()
    assert writer.returncode == 0, err.decode()
    assert {4, 5} <= set(seen) and _consistent_n(out) == 5
    _no_leftovers(out)


def test_stale_lock_of_a_dead_process_is_replaced(tmp_path):
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = _runfolder.socket.gethostname()
    lock = _runfolder.lock_path(out)
    lock.write_text(json.dumps({"pid": dead.pid, "host": host, "start": None}))
    _save(out, 3)
    assert _consistent_n(out) == 3 and not lock.exists()
    # a live owner (this process) is respected
    lock.write_text(json.dumps({"pid": os.getpid(), "host": host, "start": None}))
    with pytest.raises(ValueError, match="another meanfield run"):
        _save(out, 4, overwrite=True)
    # a reused pid (same pid, another start time) is stale
    lock.write_text(json.dumps({"pid": os.getpid(), "host": host, "start": "-1"}))
    _save(out, 4, overwrite=True)
    assert _consistent_n(out) == 4


# ----------------------------------------------------------------------------- save_run


def test_save_run_of_a_python_trajectory_loads_back_and_is_not_rerunnable(tmp_path, capsys):
    import jax.random as jr

    X0 = mf.uniform_sphere(jr.PRNGKey(0), 12, 3)
    model = mf.MeanField(3.0, attention="sa")
    traj = mf.integrate(model, X0, dt=0.1, steps=20, save_every=5)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(np.asarray(traj.ts), np.asarray(traj.xs[:, 0, 0]))
    run = mf.save_run(
        tmp_path / "script",
        traj,
        {"energy_final": model.energy(traj.final)},
        config={"beta": 3.0, "n": 12},
        figures={"snapshots.png": fig},
    )
    assert run.command == "python" and not run.rerunnable and run.config["n"] == 12
    assert np.array_equal(run.trajectory.xs, traj.xs) and run["xs"].dtype == traj.xs.dtype
    assert run.results["files"] == ["snapshots.png"]
    assert (tmp_path / "script" / "snapshots.png").read_bytes()[:4] == b"\x89PNG"
    assert isinstance(run.results["energy_final"], float)
    assert run.environment["dtype"] == "float64"
    assert main(["rerun", str(tmp_path / "script")]) == 2
    assert "save_run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="overwrite"):
        mf.save_run(tmp_path / "script", {"a": np.zeros(2)})
    sweep = mf.save_run(tmp_path / "script", {"betas": np.ones(3)}, overwrite=True)
    assert list(sweep.arrays) == ["betas"] and sweep.results == {}
    with pytest.raises(TypeError, match="arrays"):
        mf.save_run(tmp_path / "bad", [1, 2])
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- reads


def _bad_folders(tmp_path):
    """(name, folder, word the one-line error must contain): damaged copies of a run."""
    src = tmp_path / "good"
    assert main(["simulate", *TINY, "--out", str(src)]) == 0

    def missing(name):
        return lambda d: (d / name).unlink()

    def truncate(name, keep=0.6):
        def f(d):
            data = (d / name).read_bytes()
            (d / name).write_bytes(data[: int(len(data) * keep)])

        return f

    def garbage(d):
        size = (d / "arrays.npz").stat().st_size
        (d / "arrays.npz").write_bytes(b"x" * size)

    def bad_crc(d):  # same size, one byte of the stored array flipped
        path = d / "arrays.npz"
        with zipfile.ZipFile(path) as z:
            info = z.infolist()[0]
        data = bytearray(path.read_bytes())
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + info.compress_size // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def other_results(d):
        (d / "results.json").write_text(json.dumps({"n": 9}) + "\n")

    cases = {
        "missing arrays": (missing("arrays.npz"), "arrays.npz: missing"),
        "missing config": (missing("config.json"), "no config.json"),
        "missing results": (missing("results.json"), "results.json: missing"),
        "truncated config": (truncate("config.json"), "config.json: corrupt or truncated"),
        "truncated arrays": (truncate("arrays.npz"), "arrays.npz"),
        "garbage arrays": (garbage, "arrays.npz: corrupt"),
        "bad crc": (bad_crc, "arrays.npz: corrupt"),
        "results of another run": (other_results, "results.json"),
    }
    folders = []
    for name, (damage, word) in cases.items():
        d = tmp_path / name.replace(" ", "_")
        shutil.copytree(src, d)
        damage(d)
        folders.append((name, d, word))
    return folders


def test_bad_folders_give_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("rerun computed before checking the folder")

    folders = _bad_folders(tmp_path)
    monkeypatch.setitem(WORKFLOWS, "simulate", Workflow(boom))
    for name, folder, word in folders:
        with pytest.raises(ValueError) as info:
            load_run(folder)
        msg = str(info.value)
        assert word in msg and "\n" not in msg, (name, msg)
        assert main(["rerun", str(folder), "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert word in err and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert not folder.with_name(folder.name + "-rerun").exists(), name
        crit = tmp_path / "crit"
        assert main(["critical", "--from-run", str(folder), "--out", str(crit)]) == 2, name
        err = capsys.readouterr().err
        assert word in err and "from_run" in err and err.count("\n") == 1, (name, err)
        assert not crit.exists()


def test_rerun_of_a_run_with_an_empty_arrays_file_stops_before_computing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", *TINY, "--out", str(out)]) == 0
    run = load_run(out)
    write_run_files(out, "simulate", run.config, {}, run.results, run.environment)
    assert main(["rerun", str(out), "--quiet"]) == 2
    assert "no arrays to compare" in capsys.readouterr().err
    assert not (tmp_path / "run-rerun").exists()


def _perturbed(a):
    a = a.copy()
    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        flat[-1] = np.nextafter(flat[-1], np.inf)  # one ulp in one element
    elif a.dtype.kind == "b":
        flat[-1] = ~flat[-1]
    else:
        flat[-1] += 1
    return a


def test_compare_and_rerun_report_exactly_the_changed_array(tmp_path, capsys):
    src = tmp_path / "src"
    assert main(["simulate", *TINY, "--out", str(src)]) == 0
    run = load_run(src)
    assert set(run.arrays) == {"ts", "xs", "energy"}
    copy = tmp_path / "copy"
    for key in run.arrays:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(src, copy)
        arrays = {**run.arrays, key: _perturbed(run[key])}
        write_run_files(copy, "simulate", run.config, arrays, run.results, run.environment)
        problems = compare_runs(src, copy)
        assert len(problems) == 1 and problems[0].startswith(f"arrays.npz:{key}:"), problems
        assert compare_runs(copy, src) == [problems[0]]
        # a missing array and an extra one are both reported, from either side
        fewer = {k: v for k, v in run.arrays.items() if k != key}
        write_run_files(copy, "simulate", run.config, fewer, run.results, run.environment)
        assert compare_runs(src, copy) == [f"arrays.npz:{key}: present only in {src}"]
        assert compare_runs(copy, src) == [f"arrays.npz:{key}: present only in {src}"]
    assert compare_runs(src, src) == []
    # rerun of a run whose saved xs is off by one ulp: reported, and only xs
    write_run_files(
        copy,
        "simulate",
        run.config,
        {**run.arrays, "xs": _perturbed(run["xs"])},
        run.results,
        run.environment,
    )
    capsys.readouterr()
    assert main(["rerun", str(copy), "--quiet"]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "arrays.npz:" in ln]
    assert len(lines) == 1 and "arrays.npz:xs: differs" in lines[0], err
    assert "does NOT reproduce" in err
