"""The GPU benchmark script runs end to end at smoke sizes (on any backend)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", ""))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_gpu.py"),
            "--smoke",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and result["device"]
    assert {r["dtype"] for r in result["velocity"]} == {"bfloat16", "float32"}
    for row in result["velocity"]:
        assert row["seconds"] > 0 and row["reference_seconds"] > 0
    assert result["ensemble"]["max_abs_diff"] < 1e-4  # the same dynamics as plain JAX
    assert out.with_suffix(".md").read_text().startswith("# GPU benchmark")
