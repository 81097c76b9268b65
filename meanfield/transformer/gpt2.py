"""GPT-2 (Hugging Face `model_type = "gpt2"`) in equinox, with the attention logits exposed.

Shapes: n tokens, D = n_embd, H = n_head heads of d_h = D / H, L = n_layer, F = n_inner
(default 4 D), P = n_positions (the context). One sequence of token ids:

    embeddings  h^0 = E_tok[ids] + E_pos[0..n-1]                                    (n, D)
    layer l     x = LN_1(h);   [q | k | v] = x W_attn + b_attn   (Conv1D: W is (in, out))
                split into heads q^a, k^a, v^a                                    (H, n, d_h)
                S^a_ij = <q^a_i, k^a_j>        raw logits, before the scale          (H, n, n)
                P^a_ij = softmax_{j <= i}(beta S^a_ij),   beta = 1/sqrt(d_h)  (causal)
                h <- h + concat_a(P^a v^a) W_proj + b_proj
                h <- h + act(LN_2(h) W_fc + b_fc) W_mlp + b_mlp   (act: gelu_new = tanh GELU)
    final       h^L <- LN_f(h^L)

LN is LayerNorm with eps = layer_norm_epsilon (biased variance). hidden_states follow
transformers: [h^0, h^1, ..., h^{L-1}, LN_f(h^L)].
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from ._bert import layer_norm
from ._decoder import HIGHEST, DecoderOutput, activation, causal_context

__all__ = ["GPT2", "GPT2Config", "gpt2_config", "gpt2_from_state_dict"]


class GPT2Config(eqx.Module):
    """Static hyper-parameters of a GPT-2 checkpoint."""

    vocab_size: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    layers: int = eqx.field(static=True)
    heads: int = eqx.field(static=True)
    intermediate: int = eqx.field(static=True)
    max_positions: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    act: str = eqx.field(static=True, default="gelu_new")
    scale: bool = eqx.field(static=True, default=True)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_heads(self) -> int:
        return self.heads

    @property
    def beta(self) -> float:
        """1/sqrt(d_h) (or 1 with scale_attn_weights = false)."""
        return 1.0 / math.sqrt(self.head_dim) if self.scale else 1.0


def gpt2_config(raw: dict) -> GPT2Config:
    """A `GPT2Config` from a parsed config.json; ValueError naming an unsupported field."""
    if raw.get("scale_attn_by_inverse_layer_idx"):
        raise ValueError(
            "config.json: scale_attn_by_inverse_layer_idx=true is not supported "
            "(the scale would differ per layer)"
        )
    if raw.get("add_cross_attention"):
        raise ValueError("config.json: add_cross_attention=true is not supported")
    try:
        D = int(raw["n_embd"])
        act = raw.get("activation_function", "gelu_new")
        activation(act, "activation_function")
        return GPT2Config(
            vocab_size=int(raw["vocab_size"]),
            hidden=D,
            layers=int(raw["n_layer"]),
            heads=int(raw["n_head"]),
            intermediate=int(raw.get("n_inner") or 4 * D),
            max_positions=int(raw["n_positions"]),
            eps=float(raw.get("layer_norm_epsilon", 1e-5)),
            act=act,
            scale=bool(raw.get("scale_attn_weights", True)),
        )
    except KeyError as err:
        raise ValueError(
            f"config.json: missing field {err.args[0]!r} for model_type gpt2"
        ) from None


class GPT2Layers(eqx.Module):
    """The L blocks, every field stacked along a leading axis L (Conv1D: W is (in, out))."""

    ln1_w: Float[Array, "L D"]
    ln1_b: Float[Array, "L D"]
    w_attn: Float[Array, "L D 3D"]
    b_attn: Float[Array, "L 3D"]
    w_proj: Float[Array, "L D D"]
    b_proj: Float[Array, "L D"]
    ln2_w: Float[Array, "L D"]
    ln2_b: Float[Array, "L D"]
    w_fc: Float[Array, "L D F"]
    b_fc: Float[Array, "L F"]
    w_mlp: Float[Array, "L F D"]
    b_mlp: Float[Array, "L D"]


class GPT2(eqx.Module):
    """GPT-2 decoder; fields are the weights. `model(ids) -> DecoderOutput` (jit it)."""

    wte: Float[Array, "V D"]
    wpe: Float[Array, "P D"]
    layers: GPT2Layers
    lnf_w: Float[Array, " D"]
    lnf_b: Float[Array, " D"]
    config: GPT2Config

    window = None  # no sliding window

    @property
    def beta(self) -> float:
        return self.config.beta

    def __call__(self, ids: Int[Array, " n"]) -> DecoderOutput:
        """Forward pass of one sequence (module docstring); returns hidden states, q, k."""
        cfg = self.config
        n = ids.shape[0]
        H, dh = cfg.heads, cfg.head_dim
        act = activation(cfg.act)
        h0 = self.wte[ids] + self.wpe[:n]
        beta = jnp.asarray(cfg.beta, h0.dtype)

        def block(h, p):
            x = layer_norm(h, p.ln1_w, p.ln1_b, cfg.eps)
            qkv = jnp.dot(x, p.w_attn, precision=HIGHEST) + p.b_attn
            q, k, v = (t.reshape(n, H, dh).transpose(1, 0, 2) for t in jnp.split(qkv, 3, -1))
            ctx = causal_context(q, k, v, beta).transpose(1, 0, 2).reshape(n, cfg.hidden)
            h = h + jnp.dot(ctx, p.w_proj, precision=HIGHEST) + p.b_proj
            x = layer_norm(h, p.ln2_w, p.ln2_b, cfg.eps)
            ff = act(jnp.dot(x, p.w_fc, precision=HIGHEST) + p.b_fc)
            h = h + jnp.dot(ff, p.w_mlp, precision=HIGHEST) + p.b_mlp
            return h, (h, q, k)

        hL, (hs, q, k) = lax.scan(block, h0, self.layers)
        final = layer_norm(hL, self.lnf_w, self.lnf_b, cfg.eps)
        hidden = jnp.concatenate([h0[None], hs[:-1], final[None]], axis=0)
        return DecoderOutput(hidden_states=hidden, q=q, k=k)


def gpt2_from_state_dict(get, config: GPT2Config, dtype) -> GPT2:
    """Build a `GPT2` from a tensor getter `get(name, shape) -> np.ndarray` (names without
    the ``transformer.`` prefix, e.g. ``h.0.attn.c_attn.weight``)."""
    D, F, L = config.hidden, config.intermediate, config.layers

    def arr(name, shape):
        return jnp.asarray(np.asarray(get(name, shape)), dtype)

    def stack(suffix, shape):
        return jnp.stack([arr(f"h.{i}.{suffix}", shape) for i in range(L)])

    layers = GPT2Layers(
        ln1_w=stack("ln_1.weight", (D,)),
        ln1_b=stack("ln_1.bias", (D,)),
        w_attn=stack("attn.c_attn.weight", (D, 3 * D)),
        b_attn=stack("attn.c_attn.bias", (3 * D,)),
        w_proj=stack("attn.c_proj.weight", (D, D)),
        b_proj=stack("attn.c_proj.bias", (D,)),
        ln2_w=stack("ln_2.weight", (D,)),
        ln2_b=stack("ln_2.bias", (D,)),
        w_fc=stack("mlp.c_fc.weight", (D, F)),
        b_fc=stack("mlp.c_fc.bias", (F,)),
        w_mlp=stack("mlp.c_proj.weight", (F, D)),
        b_mlp=stack("mlp.c_proj.bias", (D,)),
    )
    return GPT2(
        wte=arr("wte.weight", (config.vocab_size, D)),
        wpe=arr("wpe.weight", (config.max_positions, D)),
        layers=layers,
        lnf_w=arr("ln_f.weight", (D,)),
        lnf_b=arr("ln_f.bias", (D,)),
        config=config,
    )
