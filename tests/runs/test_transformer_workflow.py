"""`meanfield transformer --model PATH`: a normal run folder that `meanfield rerun`
reproduces bit for bit, the common flags, a progress line, and one-line errors (exit code 2)
raised before any computation."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "tokenizers", reason='optional extra missing; pip install "meanfield[transformer]"'
)

from meanfield.runs import (
    cli,  # noqa: E402
    load_run,  # noqa: E402
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "transformers"
LLAMA = str(FIXTURES / "llama")  # GQA, RoPE, character tokenizer, context 64


def test_help_lists_the_common_flags(capsys):
    assert cli.main(["transformer", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--config", "--device", "--x64", "--seed", "--quiet", "--no-plots"):
        assert flag in text, flag
    assert "--truncate" in text and "--max-tokens" in text


def test_run_folder_and_rerun(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["transformer", "--model", LLAMA, "--bins", "8", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "transformer [" in err and "3/3" in err  # the progress line (forward + 2 layers)
    run = load_run(out)
    assert run.command == "transformer" and run.config["model"] == LLAMA
    assert run["beta_star"].shape[:2] == (2, 4) and run["s_grid"].ndim == 1
    assert run.results["n_tokens"] == 64 and run.results["n_train"] == 64
    assert run.results["beta_model"] == pytest.approx(1 / np.sqrt(8))
    for name in run.results["files"]:
        assert (out / name).stat().st_size > 5000
    assert cli.main(["rerun", str(out), "--quiet"]) == 0
    assert "reproduced bit-for-bit" in capsys.readouterr().out


def test_config_file_x64_and_no_plots(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'model = "{LLAMA}"\nbins = 6\nx64 = true\nplots = false\n')
    out = tmp_path / "run"
    assert cli.main(["transformer", "--config", str(cfg), "--quiet", "--out", str(out)]) == 0
    run = load_run(out)
    assert run.environment["dtype"] == "float64" and run["beta_star"].dtype == np.float64
    assert run.results["files"] == [] and not list(out.glob("*.png"))


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "falcon"
    shutil.copytree(FIXTURES / "llama", bad)
    raw = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**raw, "model_type": "falcon"}))
    assert cli.main(["transformer", "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert "model_type 'falcon' is not supported" in line and "gpt2, llama" in line
    assert not (tmp_path / "o").exists()  # refused before anything ran

    (bad / "config.json").write_text(json.dumps({**raw, "num_hidden_layers": 3}))
    assert cli.main(["transformer", "--model", str(bad), "--quiet"]) == 2
    assert "tensor 'layers.2.input_layernorm.weight' is missing" in _one_error_line(capsys)

    text = tmp_path / "long.txt"
    text.write_text("the cat sat on the mat. " * 10)  # 240 characters > context 64
    args = ["transformer", "--model", LLAMA, "--text", str(text), "--quiet", "--no-plots"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 2
    line = _one_error_line(capsys)
    assert "240 tokens, more than max_tokens=64" in line and "truncate" in line
    assert cli.main([*args, "--truncate", "--max-tokens", "48", "--out", str(tmp_path / "b")]) == 0
    assert load_run(tmp_path / "b").results["n_tokens"] == 48

    assert cli.main(["transformer", "--model", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "no such folder" in _one_error_line(capsys)
    assert cli.main(["transformer", "--model", LLAMA, "--bins", "1"]) == 2
    assert "bins must be >= 2" in _one_error_line(capsys)
