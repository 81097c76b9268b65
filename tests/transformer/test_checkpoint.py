"""Local Hugging Face checkpoints (BERT, GPT-2, Llama, Mistral, Qwen2) against a reference
nobody here wrote: transformers' eager attention probabilities and hidden states, recorded by
tests/fixtures/make_transformer_fixtures.py into tests/fixtures/transformers/ (committed, so
no torch is needed here). Plus RoPE against its closed form, grouped-query head sharing, and
the one-line errors for bad folders and inputs.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip(
    "tokenizers", reason='optional extra missing; pip install "meanfield[transformer]"'
)

from meanfield.transformer import llama as L  # noqa: E402
from meanfield.transformer import load_checkpoint  # noqa: E402

FIXTURES = Path(__file__).parent.parent / "fixtures" / "transformers"
NAMES = ["bert", "gpt2", "llama", "llama3", "llama_linear", "llama_yarn", "mistral", "qwen2"]


def _reference(name):
    with np.load(FIXTURES / name / "reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def models():
    return {name: load_checkpoint(FIXTURES / name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_match_transformers_float32(models, name):
    ref = _reference(name)
    maps = models[name].attention(ref["ids"])
    assert maps.probs.dtype == jnp.float32
    assert maps.probs.shape == ref["attentions"].shape
    err = float(np.max(np.abs(np.asarray(maps.probs) - ref["attentions"])))
    assert err < 2e-5, f"{name}: max |P - P_transformers| = {err:.2e}"
    scale = np.max(np.abs(ref["hidden_states"]), axis=-1, keepdims=True)
    hid = np.max(np.abs(np.asarray(maps.hidden_states) - ref["hidden_states"]) / scale)
    assert hid < 2e-5, f"{name}: hidden states relative error {hid:.2e}"
    # beta is the model's own scale and probs are softmax(beta * logits).
    cfg = models[name].config
    assert maps.beta == pytest.approx(1 / np.sqrt(cfg.head_dim))
    z = maps.beta * np.asarray(maps.logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(-1, keepdims=True), maps.probs, atol=2e-6)


def test_float64_matches_too(models):
    ref = _reference("llama_yarn")
    m64 = load_checkpoint(FIXTURES / "llama_yarn", dtype=jnp.float64)
    maps = m64.attention(ref["ids"])
    assert maps.probs.dtype == jnp.float64
    assert np.max(np.abs(np.asarray(maps.probs) - ref["attentions"])) < 2e-5


def test_the_reference_discriminates(models, tmp_path):
    """Negative controls: the wrong RoPE scaling or no sliding window misses the reference,
    so the matches above are not vacuous."""
    for name, edit in (
        ("llama_yarn", lambda c: c.pop("rope_parameters")),
        ("llama3", lambda c: c.pop("rope_parameters")),
        ("mistral", lambda c: c.update(sliding_window=None)),
    ):
        folder = tmp_path / name
        shutil.copytree(FIXTURES / name, folder)
        cfg = json.loads((folder / "config.json").read_text())
        edit(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
        ref = _reference(name)
        wrong = load_checkpoint(folder).attention(ref["ids"]).probs
        assert np.max(np.abs(np.asarray(wrong) - ref["attentions"])) > 1e-3, name


def test_causal_logits_and_critical_beta_of_prefixes(models):
    maps = models["gpt2"].attention(_reference("gpt2")["ids"])
    n = maps.logits.shape[-1]
    above = ~np.tril(np.ones((n, n), bool))
    assert np.all(np.isneginf(np.asarray(maps.logits)[..., above]))
    assert np.all(np.asarray(maps.probs)[..., above] == 0.0)
    import meanfield as mf

    bstar = np.asarray(mf.critical_beta(maps.logits))  # the failing call
    assert np.all(np.isnan(bstar[..., 0]))
    np.testing.assert_allclose(
        bstar[1, 2, 7], mf.critical_beta(maps.logits[1, 2, 7, :8]), rtol=1e-6
    )


def test_sliding_window_mask(models):
    maps = models["mistral"].attention(_reference("mistral")["ids"])
    n, w = maps.logits.shape[-1], 5
    i, j = np.indices((n, n))
    hidden = (j > i) | (i - j >= w)
    assert np.all(np.asarray(maps.probs)[..., hidden] == 0.0)
    assert np.all(np.isfinite(np.asarray(maps.logits)[..., ~hidden]))


def test_gqa_heads_share_keys(models):
    """Query heads 2a and 2a+1 read kv head a (4 query heads, 2 kv heads): changing kv head
    1's key weights changes the layer-0 logits of query heads 2, 3 only."""
    m = models["llama"]
    ids = _reference("llama")["ids"]
    out = m.forward(ids)
    assert out.q.shape[1] == 4 and out.k.shape[1] == 2
    maps = m.attention(ids)
    n = ids.size
    for a in range(4):
        want = np.einsum("id,jd->ij", out.q[0, a], out.k[0, a // 2])
        got = np.where(np.tril(np.ones((n, n), bool)), maps.logits[0, a], 0.0)
        np.testing.assert_allclose(got, np.tril(want), rtol=1e-5, atol=1e-5)
    dh = m.config.head_dim
    wk = m.net.layers.wk
    bumped = m.net.layers.__class__(
        **{
            **{f: getattr(m.net.layers, f) for f in m.net.layers.__dataclass_fields__},
            "wk": wk.at[0, dh : 2 * dh].multiply(3.0),
        }
    )
    import equinox as eqx

    net2 = eqx.tree_at(lambda t: t.layers, m.net, bumped)
    m2 = type(m)(net2, None, "bumped")
    new = np.asarray(m2.attention(ids).logits[0])
    old = np.asarray(maps.logits[0])
    low = np.tril(np.ones((n, n), bool))
    np.testing.assert_array_equal(new[:2][:, low], old[:2][:, low])
    assert np.max(np.abs(new[2:][:, low] - old[2:][:, low])) > 1e-2


def test_rope_closed_form():
    cfg = L.llama_config(json.loads((FIXTURES / "llama" / "config.json").read_text()))
    dh = cfg.head_dim
    inv, factor = L.rope_frequencies(cfg)
    np.testing.assert_allclose(inv, 10000.0 ** (-np.arange(0, dh, 2) / dh), rtol=1e-6)
    assert factor == 1.0
    cos, sin = L.rope_tables(cfg, 9, jnp.float64)
    key = jax.random.PRNGKey(0)
    q, k = jax.random.normal(key, (2, dh), jnp.float64)
    Q = L.apply_rope(jnp.broadcast_to(q, (9, dh)), cos, sin)
    K = L.apply_rope(jnp.broadcast_to(k, (9, dh)), cos, sin)
    G = np.asarray(Q @ K.T)
    # Closed form: pair m = (x_m, x_{m + dh/2}) rotates by the angle t omega_m, so
    # <R_i q, R_j k> = <q, R_{j-i} k> = sum_m cos(phi_m) (q.k)_m + sin(phi_m) (q x k)_m,
    # phi_m = (j - i) omega_m: a function of the offset j - i only.
    h = dh // 2
    dot = q[:h] * k[:h] + q[h:] * k[h:]
    cross = q[h:] * k[:h] - q[:h] * k[h:]
    i, j = np.indices((9, 9))
    ang = (j - i)[..., None] * inv[None, None, :]
    want = np.sum(np.cos(ang) * dot + np.sin(ang) * cross, axis=-1)
    np.testing.assert_allclose(G, want, rtol=1e-5, atol=1e-5)
    # Linear scaling divides every frequency by the factor; YaRN's factor is 0.1 ln s + 1.
    lin = L.llama_config(json.loads((FIXTURES / "llama_linear" / "config.json").read_text()))
    np.testing.assert_allclose(
        L.rope_frequencies(lin)[0], 500.0 ** (-np.arange(0, dh, 2) / dh) / 4.0, rtol=1e-6
    )
    yarn = L.llama_config(json.loads((FIXTURES / "llama_yarn" / "config.json").read_text()))
    assert L.rope_frequencies(yarn)[1] == pytest.approx(0.1 * np.log(4.0) + 1)
    assert yarn.train_length == 16 and yarn.max_positions == 64


def test_old_style_rope_config_is_read(tmp_path):
    """Configs written by transformers 4.x use rope_theta + rope_scaling {"type": ...}."""
    raw = json.loads((FIXTURES / "llama_yarn" / "config.json").read_text())
    params = raw.pop("rope_parameters")
    raw["rope_theta"] = params.pop("rope_theta")
    raw["rope_scaling"] = {"type": params.pop("rope_type"), **params}
    new, old = (
        L.llama_config(raw),
        L.llama_config(json.loads((FIXTURES / "llama_yarn" / "config.json").read_text())),
    )
    np.testing.assert_array_equal(L.rope_frequencies(new)[0], L.rope_frequencies(old)[0])


def test_sharded_checkpoint_is_read():
    assert (FIXTURES / "qwen2" / "model.safetensors.index.json").is_file()
    assert not (FIXTURES / "qwen2" / "model.safetensors").exists()


def _copy(tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def test_bad_folders_give_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_checkpoint(tmp_path / "empty")
    folder = _copy(tmp_path, "gpt2")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "falcon"}))
    with pytest.raises(ValueError, match="'falcon' is not supported.*bert, gpt2, llama"):
        load_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "n_embd": 32}))
    with pytest.raises(
        ValueError, match=r"tensor '[a-z0-9_.]+' in .*model.safetensors has shape \(16,?.*implies"
    ):
        load_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "n_layer": 3}))
    with pytest.raises(ValueError, match=r"tensor 'h.2.ln_1.weight' is missing from .*safetensors"):
        load_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no model.safetensors"):
        load_checkpoint(folder)
    shard = _copy(tmp_path, "qwen2")
    next(shard.glob("model-00002*")).unlink()
    with pytest.raises(ValueError, match="lists the shard model-00002"):
        load_checkpoint(shard)
    lla = _copy(tmp_path, "llama_linear")
    raw = json.loads((lla / "config.json").read_text())
    raw["rope_parameters"]["rope_type"] = "longrope"
    (lla / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="rope_type='longrope' is not supported.*yarn"):
        load_checkpoint(lla)


def test_text_and_context_limits(models, tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tm

    vocab = {f"w{i}": i for i in range(32)}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = _copy(tmp_path, "gpt2")
    tok.save(str(folder / "tokenizer.json"))
    m = load_checkpoint(folder)
    maps = m.attention("w3 w5 w7")
    assert maps.tokens == ["w3", "w5", "w7"] and list(maps.ids) == [3, 5, 7]
    np.testing.assert_allclose(maps.probs, models["gpt2"].attention([3, 5, 7]).probs)
    long = " ".join(["w1"] * 70)  # context 64
    with pytest.raises(ValueError, match="70 tokens, more than max_tokens=64.*truncate"):
        m.attention(long)
    assert m.attention(long, truncate=True).probs.shape[-1] == 64
    with pytest.raises(ValueError, match="no tokenizer.json"):
        models["llama_yarn"].attention("w1 w2")
    with pytest.raises(ValueError, match="token ids must lie in"):
        models["gpt2"].attention([1, 99])


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason='reference extra missing; pip install "meanfield[reference]" to re-check fixtures',
)
def test_regenerated_reference_matches(tmp_path):
    """With the `reference` extra: rebuild a checkpoint with transformers now, check the
    committed references reproduce and that we match the fresh ones."""
    import sys

    sys.path.insert(0, str(FIXTURES.parent))
    try:
        import make_transformer_fixtures as gen
    finally:
        sys.path.pop(0)
    for name in ("llama",):  # GQA + RoPE; one model keeps the test short
        gen.build(name, tmp_path / name)
        with np.load(tmp_path / name / "reference.npz") as fresh:
            np.testing.assert_allclose(
                fresh["attentions"], _reference(name)["attentions"], atol=1e-6
            )
            maps = load_checkpoint(tmp_path / name).attention(fresh["ids"])
            assert np.max(np.abs(np.asarray(maps.probs) - fresh["attentions"])) < 2e-5


def test_runtime_code_never_imports_torch_or_transformers():
    root = Path(__file__).parent.parent.parent / "meanfield"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for name in ("torch", "transformers"):
            assert f"import {name}" not in text and f"from {name}" not in text, path


def test_bf16_and_f16_tensors_are_widened_exactly(tmp_path):
    from meanfield.transformer.checkpoint import SafetensorsFolder

    rng = np.random.default_rng(0)
    exact = rng.normal(size=(3, 5)).astype(np.float32)
    exact = (exact.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # bf16 values
    bf16 = (exact.view(np.uint32) >> 16).astype("<u2").tobytes()
    half = rng.normal(size=(4,)).astype("<f2")
    blobs = {
        "a.weight": ("BF16", exact.shape, bf16),
        "model.b.bias": ("F16", half.shape, half.tobytes()),
    }
    header, data, start = {}, b"", 0
    for name, (dt, shape, raw) in blobs.items():
        header[name] = {
            "dtype": dt,
            "shape": list(shape),
            "data_offsets": [start, start + len(raw)],
        }
        data += raw
        start += len(raw)
    head = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(len(head).to_bytes(8, "little") + head + data)
    folder = SafetensorsFolder(tmp_path)
    got = folder.get("a.weight", (3, 5))
    assert got.dtype == np.float32 and np.array_equal(got, exact)
    # Task-head prefixes (model., transformer., bert.) are found from the base name.
    np.testing.assert_array_equal(folder.get("b.bias"), half.astype(np.float32))
    with pytest.raises(ValueError, match=r"tensor 'a.weight' in .* has shape \(3, 5\)"):
        folder.get("a.weight", (5, 3))
