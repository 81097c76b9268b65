"""The `meanfield` command: demo writes figures and numbers; bad flags fail clearly."""

import json

import pytest

from meanfield.cli import main


def test_demo_quick_writes_figures_and_summary(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sphere"]["energy_non_decreasing"]
    assert summary["sphere"]["energy_final"] > summary["sphere"]["energy_initial"]
    assert summary["circle"]["energy_final"] > summary["circle"]["energy_initial"]
    for name in ("circle_angles", "circle_energy", "sphere_final", "beta_sweep"):
        png = tmp_path / f"{name}.png"
        assert png.stat().st_size > 10_000
    assert "![sweep](beta_sweep.png)" in (tmp_path / "report.md").read_text()


def test_simulate_saves_trajectory_and_config(tmp_path):
    import numpy as np

    args = [
        "simulate",
        "--n",
        "16",
        "--d",
        "3",
        "--beta",
        "2",
        "--steps",
        "20",
        "--save-every",
        "5",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    data = np.load(tmp_path / "trajectory.npz")
    assert data["xs"].shape == (5, 16, 3)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["beta"] == 2.0 and "jax" in config


@pytest.mark.parametrize("flag", [["--n", "-3"], ["--beta", "0"], ["--sign", "2"]])
def test_bad_flags_fail_before_compiling(flag, capsys):
    with pytest.raises(SystemExit) as err:
        main(["simulate", *flag])
    assert err.value.code == 2
    assert flag[0].lstrip("-") in capsys.readouterr().err
