"""Long-context diagnostics: sampled causal rows equal the critical scale of their prefix,
the growth-law fits recover known laws, s(n) keeps the training-length ratio, practical
scalings have their closed forms, and n = 4096 runs within 4 GB (peak RSS measured in a
subprocess, as tests/test_memory.py does)."""

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "tokenizers", reason='optional extra missing; pip install "meanfield[transformer]"'
)

from meanfield import transformer as tr  # noqa: E402

FIXTURES = Path(__file__).parent.parent / "fixtures" / "transformers"
IDS = (np.arange(48) * 7) % 32


def _critical_beta_reference(rows):
    """max_k log k / Delta_(k) over positive gaps, by NumPy sorting (independent code)."""
    gaps = np.sort(rows.max(-1, keepdims=True) - rows, axis=-1)[..., 1:]
    k = np.arange(1, gaps.shape[-1] + 1)
    terms = np.where(gaps > 0, np.log(k) / np.where(gaps > 0, gaps, 1.0), 0.0)
    return terms.max(-1)


@pytest.mark.parametrize("name", ["gpt2", "mistral", "bert"])
def test_sampled_rows_equal_prefix_critical_beta(name):
    model = tr.load_checkpoint(FIXTURES / name)
    rows, n_keys, _ = tr.row_positions(IDS.size, bins=6, rows_per_bin=3, window=model.window)
    got = tr.sampled_rows_critical_beta(model, IDS, rows)
    if model.causal:
        logits = np.asarray(model.attention(IDS).logits, np.float64)
    else:  # encoders: read causally, query i against keys 0..i
        _, q, k = model.queries_keys(IDS)
        logits = np.einsum("lhid,lhjd->lhij", np.asarray(q, np.float64), np.asarray(k, np.float64))
    for r, (i, m) in enumerate(zip(rows, n_keys, strict=True)):
        prefix = logits[:, :, i, i + 1 - m : i + 1]  # the m keys query i sees
        want = _critical_beta_reference(prefix)
        np.testing.assert_allclose(got[:, :, r], want, rtol=2e-4, err_msg=f"{name} row {i}")
    if name == "mistral":
        assert n_keys.max() == 5  # the sliding window caps the keys a query sees


def test_fit_laws_recover_known_laws():
    n = np.geomspace(8, 4096, 12)
    cases = {
        "sqrt_log": 1.7 * np.sqrt(np.log(n)),
        "log": 0.4 * np.log(n),
        "log_squared": 2.5 * np.log(n) ** 2,
    }
    for i, (name, b) in enumerate(cases.items()):
        fit = tr.fit_laws(n, b)
        assert tr.LAW_NAMES[int(fit["best"])] == name
        assert fit["constants"][i] == pytest.approx({0: 1.7, 1: 0.4, 2: 2.5}[i], rel=1e-12)
        assert fit["rms"][i] < 1e-12
        assert fit["gamma"] == pytest.approx([0.5, 1.0, 2.0][i], rel=1e-12)
    # Batched over heads, with a non-finite entry ignored.
    both = np.stack([cases["log"], cases["sqrt_log"]])
    both[0, 3] = np.nan
    fit = tr.fit_laws(n, both)
    np.testing.assert_allclose(fit["gamma"], [1.0, 0.5], rtol=1e-12)


def test_practical_scalings_closed_forms():
    n = np.array([512, 2048, 8192])
    s = tr.practical_scalings(n, 2048)
    np.testing.assert_allclose(s["log_n"], np.log(n) / np.log(2048))
    np.testing.assert_allclose(s["yarn"], [1.0, 1.0, (0.1 * np.log(4.0) + 1) ** 2])


def test_long_context_result_is_consistent():
    model = tr.load_checkpoint(FIXTURES / "llama_yarn")  # train length 16, context 64
    ids = (np.arange(64) * 5) % 32
    res = tr.long_context_diagnostics(model, ids=ids, bins=8, rows_per_bin=3)
    L, H = res["layers"], res["heads"]
    assert res["n_train"] == 16 and res["context"] == 64 and res["n_tokens"] == 64
    assert res["beta_star"].shape == (L, H, res["rows"].size)
    np.testing.assert_allclose(res["ratio_bins"], res["beta_model"] / res["beta_star_bins"])
    # s(n) keeps the ratio at its training-length value under the head's own fitted law.
    grid = res["s_grid"]
    fitted = res["c_gamma"][..., None] * np.log(grid) ** res["gamma"][..., None]
    kept = res["s_recommended"] * res["beta_model"] / fitted
    np.testing.assert_allclose(kept, np.broadcast_to(res["ratio_train"][..., None], kept.shape))
    j = np.flatnonzero(grid == 16)
    if j.size:
        np.testing.assert_allclose(res["s_recommended"][..., j], 1.0)
    assert np.all(np.isfinite(res["beta_star_bins"])) and np.all(res["beta_star_bins"] > 0)
    figs = tr.plot_long_context(res)
    assert set(figs) == {"critical_ratio", "beta_star", "logit_scale"}
    import matplotlib.pyplot as plt

    plt.close("all")


def test_text_longer_than_context_is_refused_or_windowed(tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tm

    folder = tmp_path / "gpt2"
    shutil.copytree(FIXTURES / "gpt2", folder)
    tok = Tokenizer(tm.WordLevel({f"w{i}": i for i in range(32)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    model = tr.load_checkpoint(folder)
    text = " ".join(f"w{(3 * i) % 32}" for i in range(100))
    with pytest.raises(ValueError, match="100 tokens, more than max_tokens=64"):
        tr.long_context_diagnostics(model, text)
    res = tr.long_context_diagnostics(model, text, truncate=True, bins=6)
    assert res["n_tokens"] == 64
    res = tr.long_context_diagnostics(model, text, max_tokens=40, truncate=True, bins=6)
    assert res["n_tokens"] == 40


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from safetensors.numpy import save_file
    folder, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    D, H, G, dh, F, V, L = 128, 8, 4, 16, 256, 512, 2
    cfg = dict(model_type="llama", vocab_size=V, hidden_size=D, intermediate_size=F,
               num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=G,
               head_dim=dh, max_position_embeddings=n, rms_norm_eps=1e-5,
               rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    t = {"embed_tokens.weight": rng.normal(size=(V, D)), "norm.weight": np.ones(D)}
    for i in range(L):
        p = f"layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(D)
        t[p + "post_attention_layernorm.weight"] = np.ones(D)
        for name, shape in (("q_proj", (H * dh, D)), ("k_proj", (G * dh, D)),
                            ("v_proj", (G * dh, D)), ("o_proj", (D, H * dh))):
            t[p + "self_attn." + name + ".weight"] = rng.normal(size=shape) / np.sqrt(D)
        for name, shape in (("gate_proj", (F, D)), ("up_proj", (F, D)), ("down_proj", (D, F))):
            t[p + "mlp." + name + ".weight"] = rng.normal(size=shape) / np.sqrt(shape[1])
    import os
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.astype(np.float32) for k, v in t.items()}, folder + "/model.safetensors")
    open(folder + "/config.json", "w").write(json.dumps(cfg))
    from meanfield.transformer import load_checkpoint, long_context_diagnostics
    model = load_checkpoint(folder)
    t0 = time.perf_counter()
    res = long_context_diagnostics(model, ids=rng.integers(0, V, n))
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        hwm = [ln for ln in f if ln.startswith("VmHWM:")][0]
    print("RESULT " + json.dumps(dict(
        peak_mb=int(hwm.split()[1]) / 1024, seconds=seconds, n=res["n_tokens"],
        finite=bool(np.all(np.isfinite(res["beta_star_bins"]))),
        gamma=float(res["gamma_median"]))))
    """
)


def test_n_4096_within_4_gb(tmp_path):
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux) to read the peak RSS")
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "model"), "4096"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    print(res)
    assert res["n"] == 4096 and res["finite"]
    assert res["peak_mb"] < 4096, res
    assert math.isfinite(res["gamma"])
