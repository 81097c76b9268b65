"""The `meanfield` command end to end, in temporary folders.

demo --quick writes every promised file; simulate + rerun give identical arrays; bad flags
and configs give a one-line error and exit code 2, with no traceback and nothing run.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from meanfield.runs import load_run
from meanfield.runs.cli import main

SMALL = ["--n", "16", "--d", "3", "--beta", "2", "--steps", "20", "--save-every", "5"]


def test_demo_quick_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    report = (out / "report.md").read_text()
    assert len(summary["files"]) >= 15
    for name in summary["files"]:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.stat().st_size > 5_000, name
            assert f"({name})" in report, f"report.md does not embed {name}"
    for section in summary["sections"]:
        for name in ("config.json", "arrays.npz", "results.json"):
            assert (out / section / name).is_file()
    env = json.loads((out / "config.json").read_text())["environment"]
    assert {"jax", "device", "dtype", "seed"} <= set(env)
    head = summary["headline"]
    assert head["circle_energy"][1] > head["circle_energy"][0]
    assert head["certified_d3"]["residual"] < 1e-10  # Newton-refined to a critical point
    assert max(head["repulsive_largest_mass_vs_beta"].values()) <= 1.0
    assert summary["meta"]["seconds"] > 0  # recorded (speed lives in benchmarks/, not here)
    # a second demo into the same folder is refused (before running) unless --overwrite
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--quick", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "report.md").read_text() == report
    hidden = [p for p in out.rglob(".*")]  # sections' locks and staging folders are gone
    assert hidden == [], hidden
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo"]  # no lock, no staging


def test_simulate_then_rerun_is_bit_for_bit(tmp_path, capsys):
    run_dir, again = tmp_path / "run", tmp_path / "again"
    assert main(["simulate", *SMALL, "--out", str(run_dir)]) == 0
    assert "simulate [" in capsys.readouterr().err  # the progress line
    run = load_run(run_dir)
    assert run["xs"].shape == (5, 16, 3) and run.trajectory.xs.shape == (5, 16, 3)
    assert run.config["beta"] == 2.0 and run.config["seed"] == 0
    assert {"jax", "device", "dtype", "seed", "x64"} <= set(run.environment)
    assert main(["rerun", str(run_dir), "--out", str(again), "--quiet"]) == 0
    assert "bit-for-bit" in capsys.readouterr().out
    other = load_run(again)
    for key in run.arrays:
        assert np.array_equal(run[key], other[key]) and run[key].dtype == other[key].dtype


def test_config_file_with_flag_override_and_quiet(tmp_path, capsys):
    cfg = tmp_path / "sim.toml"
    cfg.write_text('n = 12\nd = 2\nbeta = 3.0\nsteps = 10\nsave_every = 5\nattention = "usa"\n')
    out = tmp_path / "run"
    assert (
        main(["simulate", "--config", str(cfg), "--beta", "5", "--quiet", "--out", str(out)]) == 0
    )
    assert capsys.readouterr().err == ""
    run = load_run(out)
    assert run.config["n"] == 12 and run.config["beta"] == 5.0 and run["xs"].shape == (3, 12, 2)
    # a saved config.json is itself a valid --config
    assert (
        main(
            [
                "simulate",
                "--config",
                str(out / "config.json"),
                "--quiet",
                "--out",
                str(tmp_path / "copy"),
            ]
        )
        == 0
    )
    assert np.array_equal(load_run(tmp_path / "copy")["xs"], run["xs"])


def test_sweep_and_localisation_small(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--n", "8", "--seeds", "2", "--betas", "1", "4", "--steps", "20"]
    assert main([*args, "--save-every", "10", "--quiet", "--out", str(out)]) == 0
    run = load_run(out)
    assert run["counts"].shape == (2, 2, 3) and run["final"].shape == (2, 2, 8, 2)
    for name in ("phase_diagram.png", "largest_mass_map.png", "largest_mass.png"):
        assert (out / name).is_file(), name
    loc = tmp_path / "loc"
    args = ["critical", "--mode", "localisation", "--n", "16", "--dims", "2", "--betas", "1"]
    assert main([*args, "--seeds", "1", "--max-steps", "200", "--quiet", "--out", str(loc)]) == 0
    assert (loc / "localisation_study.png").is_file() and load_run(loc)["atoms"].shape == (1,)


BAD_FLAGS = [
    (["simulate", "--n", "-3"], "n"),
    (["simulate", "--beta", "0"], "beta"),
    (["simulate", "--sign", "2"], "sign"),
    (["simulate", "--n", "3.5"], "n"),
    (["simulate", "--steps", "10", "--save-every", "3"], "save_every"),
    (["simulate", "--bogus", "1"], "bogus"),
    (["simulate", "--n", "100000", "--steps", "1000", "--save-every", "1"], "save_every"),
    (["sweep", "--betas", "1", "x"], "betas"),
    (["sweep", "--seeds", "0"], "seeds"),
    (["temperature", "--families", "nosuch"], "nosuch"),
    (["temperature", "--families", "weibull:q=2"], "weibull"),
    (["simulate", "--device", "tpu"], "device"),
    (["critical", "--from-run", "/nonexistent/run"], "from_run"),
    (["rerun", "/nonexistent/run"], "no such run folder"),
]

BAD_FILES = [
    ("nn = 3\n", "nn"),
    ('n = "many"\n', "n"),
    ("n = -5\n", "n"),
    ("x64 = 1\n", "x64"),
    ("n = [\n", "parse"),
]


def _assert_one_line_error(code, err, word):
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert word in err


@pytest.mark.parametrize("argv, word", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_one_line_error_exit_2(argv, word, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path / "out")] if argv[0] != "rerun" else argv)
    _assert_one_line_error(code, capsys.readouterr().err, word)
    assert not (tmp_path / "out").exists()  # failed before running anything


@pytest.mark.parametrize("text, word", BAD_FILES)
def test_bad_config_files_one_line_error_exit_2(text, word, tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code = main(["simulate", "--config", str(cfg), "--out", str(tmp_path / "out")])
    _assert_one_line_error(code, capsys.readouterr().err, word)
    assert not (tmp_path / "out").exists()


def test_bad_json_type_for_a_list(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"betas": 3}))
    code = main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "out")])
    _assert_one_line_error(code, capsys.readouterr().err, "betas")


def test_console_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "meanfield", "simulate", "--n", "-3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_one_line_error(proc.returncode, proc.stderr, "n")


@pytest.mark.parametrize(
    "command",
    ["demo", "simulate", "sweep", "critical", "temperature", "rerun", "resume", "transformer"],
)
def test_help_on_every_subcommand(command, capsys):
    assert main([command, "--help"]) == 0
    assert "xample" in capsys.readouterr().out


def test_every_subcommand_has_the_common_flags_and_every_kernel():
    from meanfield.kernels import REGISTRY
    from meanfield.runs.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or a.choices)
    flags = {
        name: {s for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()
    }
    common = {"--out", "--quiet", "--overwrite"}
    workflow = common | {"--config", "--seed", "--x64", "--device", "--plots"}
    for name in ("simulate", "sweep", "critical", "temperature", "transformer", "demo"):
        assert workflow <= flags[name], (name, workflow - flags[name])
    assert common | {"--device"} <= flags["reproduce"]
    for name in ("simulate", "sweep", "critical"):
        kernel = next(a for a in sub.choices[name]._actions if "--kernel" in a.option_strings)
        assert set(REGISTRY) <= set(kernel.choices or REGISTRY)
    for k in REGISTRY:  # each name parses (the kernel's own checks run later, per size)
        parser.parse_args(["simulate", "--kernel", k, "--out", "x"])
