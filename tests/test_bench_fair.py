"""The fair CPU benchmark runs end to end at smoke sizes and writes a complete table."""

import json
import os
import subprocess
import sys
from pathlib import Path

from meanfield.kernels import native_available

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("numpy", "plain_jax")


def test_bench_fair_smoke(tmp_path):
    out = tmp_path / "fair.json"
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu") or "cpu")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_fair.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and result["machine"]["cores"] >= 1
    assert result["machine"]["meanfield_path"] == str(ROOT / "meanfield")
    for key in ("exp_per_s", "flop_per_s", "tiny_bmm_flop_per_s"):
        assert result["floor"][key] > 0
    rows = result["rows"]
    kinds = [r["workload"] for r in rows]
    assert kinds.count("velocity") == 3
    assert {"ensemble", "critical_beta", "entropy_curve"} <= set(kinds)
    for row in rows:
        assert row["meanfield_s"] > 0
        for peer in PEERS:
            assert row[f"{peer}_s"] > 0 and row[f"ratio_{peer}"] > 0
        assert row["floor_s"] > 0 and row["percent_of_floor"] > 0
        if row["workload"] in ("velocity", "ensemble"):
            assert (row["torch_s"] is None) == (result["torch_note"] is not None)
    for row in rows:
        if row["workload"] == "velocity":
            assert row["max_diff"] < 1e-4, row  # relative to max |v|, against float64
            assert row["kernel"] and row["meanfield_variant"].startswith("meanfield_")
            # a kernel with one exponential per pair is held to its own, lower floor
            symmetric = row["kernel"].startswith("Symmetric")
            assert symmetric == (row["n"] == 2048)
            assert (row["floor_s"] < row["standard_floor_s"]) == symmetric
            if row["d"] == 3:  # the native fused loop where it is built
                assert row["kernel"] == ("Fused()" if native_available() else "Tiled()")
        elif row["workload"] == "ensemble":
            assert row["x0_identical"]
            assert row["max_diff"] < 1e-3, row  # final states against float64
            assert max(row["meanfield_vs_peer"].values()) < 1e-3, row
        elif row["workload"] == "critical_beta":
            assert row["max_diff"] < 1e-5, row
        else:
            assert row["max_diff"] < 1e-4, row
    if native_available():  # the floor includes the fused loop's own exponential
        assert any(k.startswith("meanfield_native") for k in result["floor"]["exp_rates"])
    md = (tmp_path / "RESULTS_fair.md").read_text()
    assert md.startswith("# Fair CPU benchmark") and "% of floor" in md
