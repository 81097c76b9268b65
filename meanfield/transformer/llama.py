"""The Llama family (Hugging Face `model_type` llama, mistral, qwen2) in equinox, with RoPE,
grouped-query attention, RMSNorm and SwiGLU, and the attention logits exposed.

Shapes: n tokens, D = hidden_size, H = num_attention_heads query heads, G =
num_key_value_heads (G divides H), d_h = head_dim (default D / H), L layers, F =
intermediate_size. One sequence of token ids, positions t = 0..n-1:

    embeddings  h^0 = E[ids]                                                         (n, D)
    layer l     x = RMS_1(h);   q = x W_q^T (+ b_q),  k = x W_k^T (+ b_k),  v = x W_v^T (+ b_v)
                q (H, n, d_h), k and v (G, n, d_h);  q, k <- RoPE(q), RoPE(k)
                S^a_ij = <q^a_i, k^g(a)_j>,  g(a) = a // (H / G)   raw logits       (H, n, n)
                P^a_ij = softmax_{j <= i, i - j < w}(beta S^a_ij),  beta = 1/sqrt(d_h)
                h <- h + concat_a(P^a v^g(a)) W_o^T
                h <- h + W_down (silu(W_gate RMS_2(h)) * W_up RMS_2(h))           (SwiGLU)
    final       h^L <- RMS_f(h^L)

RMS(x) = w x / sqrt(mean(x^2) + eps). Biases: q/k/v for qwen2 (and llama with
attention_bias = true). w = sliding_window for mistral (no window when null).

RoPE (transformers' "rotate half" convention). With inverse frequencies
omega_m (m = 0..d_h/2 - 1) and the attention factor A (1 except YaRN):

    cos_t = A cos(t omega),  sin_t = A sin(t omega)    (each repeated twice: [.., ..])
    RoPE(x)_t = x_t cos_t + rotate_half(x_t) sin_t,     rotate_half([x1, x2]) = [-x2, x1]

so <RoPE(q)_i, RoPE(k)_j> depends on i - j only, and is A^2 times the unscaled product.
Inverse frequencies per `rope_type` (rope_theta = base b):

    default   omega_m = b^(-2m/d_h)
    linear    omega_m / factor                            (position interpolation)
    llama3    omega_m / factor for wavelengths 2 pi/omega > n_orig/low_freq_factor, omega_m
              for wavelengths < n_orig/high_freq_factor, and in between the blend
              (1 - c) omega/factor + c omega, c = (n_orig/wavelength - low)/(high - low)
    yarn      ramp between interpolation omega/factor and extrapolation omega over the
              dimensions [floor(d(beta_fast)), ceil(d(beta_slow))], d(r) = d_h
              log(n_orig/(2 pi r)) / (2 log b); A = 0.1 ln(factor) + 1 (or attention_factor)

hidden_states follow transformers: [h^0, ..., h^{L-1}, RMS_f(h^L)]. The logits S include
the YaRN factor A^2 (it is part of q and k); beta is 1/sqrt(d_h).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from ._decoder import HIGHEST, DecoderOutput, activation, causal_context, rms_norm

__all__ = [
    "LLAMA_TYPES",
    "ROPE_TYPES",
    "Llama",
    "LlamaConfig",
    "apply_rope",
    "llama_config",
    "llama_from_state_dict",
    "rope_frequencies",
    "rope_tables",
]

#: model_type values read with the Llama architecture.
LLAMA_TYPES = ("llama", "mistral", "qwen2")
#: rope_type values implemented (checked against transformers: default, linear, llama3, yarn).
ROPE_TYPES = ("default", "linear", "llama3", "yarn")


class LlamaConfig(eqx.Module):
    """Static hyper-parameters of a Llama-architecture checkpoint."""

    vocab_size: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    layers: int = eqx.field(static=True)
    heads: int = eqx.field(static=True)
    kv_heads: int = eqx.field(static=True)
    head_dim: int = eqx.field(static=True)
    intermediate: int = eqx.field(static=True)
    max_positions: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    rope_theta: float = eqx.field(static=True)
    rope: tuple = eqx.field(static=True, default=(("rope_type", "default"),))
    act: str = eqx.field(static=True, default="silu")
    qkv_bias: bool = eqx.field(static=True, default=False)
    o_bias: bool = eqx.field(static=True, default=False)
    mlp_bias: bool = eqx.field(static=True, default=False)
    window: int | None = eqx.field(static=True, default=None)
    model_type: str = eqx.field(static=True, default="llama")

    @property
    def beta(self) -> float:
        """The model's own scale 1/sqrt(d_h)."""
        return 1.0 / math.sqrt(self.head_dim)

    @property
    def rope_params(self) -> dict:
        return dict(self.rope)

    @property
    def train_length(self) -> int:
        """The pre-training context: original_max_position_embeddings of a scaled RoPE, else
        max_position_embeddings."""
        return int(self.rope_params.get("original_max_position_embeddings", self.max_positions))


def _rope_dict(raw: dict) -> dict:
    """The RoPE parameters of a config.json, old (rope_theta + rope_scaling) or new
    (rope_parameters) layout, as one flat dict with rope_type and rope_theta."""
    params = dict(raw.get("rope_parameters") or {})
    scaling = raw.get("rope_scaling") or {}
    params = {**scaling, **params}
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params.pop("type")
    params.pop("type", None)
    params.setdefault("rope_type", "default")
    params.setdefault("rope_theta", raw.get("rope_theta", 10000.0))
    if params["rope_type"] in ("llama3", "yarn"):
        params.setdefault(
            "original_max_position_embeddings",
            raw.get("original_max_position_embeddings", raw["max_position_embeddings"]),
        )
    return params


def llama_config(raw: dict) -> LlamaConfig:
    """A `LlamaConfig` from a parsed config.json (llama, mistral, qwen2); ValueError naming
    the field for anything that is not implemented (rather than a silently wrong model)."""
    mt = raw.get("model_type", "llama")
    try:
        D, H = int(raw["hidden_size"]), int(raw["num_attention_heads"])
        G = int(raw.get("num_key_value_heads") or H)
        dh = int(raw.get("head_dim") or D // H)
        rope = _rope_dict(raw)
        act = raw.get("hidden_act", "silu")
        activation(act)
        if H % G:
            raise ValueError(
                f"config.json: num_attention_heads={H} is not a multiple of num_key_value_heads={G}"
            )
        if rope["rope_type"] not in ROPE_TYPES:
            raise ValueError(
                f"config.json: rope_type={rope['rope_type']!r} is not supported "
                f"(supported: {', '.join(ROPE_TYPES)})"
            )
        if float(rope.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("config.json: partial_rotary_factor != 1 is not supported")
        window = None
        if mt == "mistral":
            window = raw.get("sliding_window")
        elif mt == "qwen2" and raw.get("use_sliding_window"):
            raise ValueError("config.json: qwen2 with use_sliding_window=true is not supported")
        qkv_bias = mt == "qwen2" or bool(raw.get("attention_bias", False))
        return LlamaConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden=D,
            layers=int(raw["num_hidden_layers"]),
            heads=H,
            kv_heads=G,
            head_dim=dh,
            intermediate=int(raw["intermediate_size"]),
            max_positions=int(raw["max_position_embeddings"]),
            eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope["rope_theta"]),
            rope=tuple(sorted((k, v) for k, v in rope.items() if not isinstance(v, list | dict))),
            act=act,
            qkv_bias=qkv_bias,
            o_bias=mt != "qwen2" and bool(raw.get("attention_bias", False)),
            mlp_bias=bool(raw.get("mlp_bias", False)),
            window=None if window is None else int(window),
            model_type=mt,
        )
    except KeyError as err:
        raise ValueError(
            f"config.json: missing field {err.args[0]!r} for model_type {mt}"
        ) from None


def rope_frequencies(config: LlamaConfig) -> tuple[np.ndarray, float]:
    """(omega (d_h/2,), attention factor A) for the config's rope_type (module docstring).

    Computed in float32 on the host, as transformers does.
    """
    p = config.rope_params
    dim = config.head_dim
    base = float(p["rope_theta"])
    exps = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv = (1.0 / (np.float32(base) ** exps)).astype(np.float32)
    kind = p["rope_type"]
    if kind == "default":
        return inv, 1.0
    factor = float(p["factor"])
    if kind == "linear":
        return (inv / np.float32(factor)).astype(np.float32), 1.0
    n_orig = float(p["original_max_position_embeddings"])
    if kind == "llama3":
        low, high = float(p["low_freq_factor"]), float(p["high_freq_factor"])
        wavelen = (2 * math.pi / inv).astype(np.float32)
        out = np.where(wavelen > n_orig / low, inv / factor, inv).astype(np.float32)
        smooth = (n_orig / wavelen - low) / (high - low)
        blended = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < n_orig / high) & ~(wavelen > n_orig / low)
        return np.where(medium, blended, out).astype(np.float32), 1.0
    # yarn
    attention = p.get("attention_factor")
    mscale, mscale_all = p.get("mscale"), p.get("mscale_all_dim")

    def get_mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if attention is None:
        if mscale and mscale_all:
            attention = get_mscale(factor, mscale) / get_mscale(factor, mscale_all)
        else:
            attention = get_mscale(factor)
    beta_fast = float(p.get("beta_fast") or 32)
    beta_slow = float(p.get("beta_slow") or 1)

    def corr_dim(rot):
        return dim * math.log(n_orig / (rot * 2 * math.pi)) / (2 * math.log(base))

    lo, hi = corr_dim(beta_fast), corr_dim(beta_slow)
    if p.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - lo) / (hi - lo), 0, 1)
    extrap = (1 - ramp).astype(np.float32)
    pos = (np.float32(base) ** exps).astype(np.float32)
    interp = (1.0 / (np.float32(factor) * pos)).astype(np.float32)
    ext = (1.0 / pos).astype(np.float32)
    return (interp * (1 - extrap) + ext * extrap).astype(np.float32), float(attention)


def rope_tables(config: LlamaConfig, n: int, dtype) -> tuple[Array, Array]:
    """cos and sin tables (n, d_h): A cos(t omega) and A sin(t omega), each frequency twice."""
    inv, factor = rope_frequencies(config)
    t = jnp.arange(n, dtype=jnp.float32)
    ang = t[:, None] * jnp.asarray(inv)[None, :]
    ang = jnp.concatenate([ang, ang], axis=-1)
    return (jnp.cos(ang) * factor).astype(dtype), (jnp.sin(ang) * factor).astype(dtype)


def apply_rope(x: Float[Array, "... n dh"], cos: Array, sin: Array) -> Float[Array, "... n dh"]:
    """x cos + rotate_half(x) sin, rotate_half([x1, x2]) = [-x2, x1]."""
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


class LlamaLayers(eqx.Module):
    """The L decoder layers, stacked along a leading axis (Linear: W is (out, in)).

    Absent biases are stored as zeros (same computation, one code path).
    """

    norm1: Float[Array, "L D"]
    wq: Float[Array, "L Hd D"]
    bq: Float[Array, "L Hd"]
    wk: Float[Array, "L Gd D"]
    bk: Float[Array, "L Gd"]
    wv: Float[Array, "L Gd D"]
    bv: Float[Array, "L Gd"]
    wo: Float[Array, "L D Hd"]
    bo: Float[Array, "L D"]
    norm2: Float[Array, "L D"]
    w_gate: Float[Array, "L F D"]
    b_gate: Float[Array, "L F"]
    w_up: Float[Array, "L F D"]
    b_up: Float[Array, "L F"]
    w_down: Float[Array, "L D F"]
    b_down: Float[Array, "L D"]


class Llama(eqx.Module):
    """A Llama-architecture decoder; fields are the weights. `model(ids) -> DecoderOutput`."""

    embed: Float[Array, "V D"]
    layers: LlamaLayers
    norm: Float[Array, " D"]
    config: LlamaConfig

    @property
    def beta(self) -> float:
        return self.config.beta

    @property
    def window(self) -> int | None:
        return self.config.window

    def __call__(self, ids: Int[Array, " n"]) -> DecoderOutput:
        """Forward pass of one sequence (module docstring); returns hidden states, q, k."""
        cfg = self.config
        n = ids.shape[0]
        H, G, dh = cfg.heads, cfg.kv_heads, cfg.head_dim
        act = activation(cfg.act)
        h0 = self.embed[ids]
        cos, sin = rope_tables(cfg, n, h0.dtype)
        beta = jnp.asarray(cfg.beta, h0.dtype)

        def lin(x, w, b):
            return jnp.dot(x, w.T, precision=HIGHEST) + b

        def block(h, p):
            x = rms_norm(h, p.norm1, cfg.eps)
            q = lin(x, p.wq, p.bq).reshape(n, H, dh).transpose(1, 0, 2)
            k = lin(x, p.wk, p.bk).reshape(n, G, dh).transpose(1, 0, 2)
            v = lin(x, p.wv, p.bv).reshape(n, G, dh).transpose(1, 0, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            ctx = causal_context(q, k, v, beta, cfg.window)
            h = h + lin(ctx.transpose(1, 0, 2).reshape(n, H * dh), p.wo, p.bo)
            x = rms_norm(h, p.norm2, cfg.eps)
            ff = act(lin(x, p.w_gate, p.b_gate)) * lin(x, p.w_up, p.b_up)
            h = h + lin(ff, p.w_down, p.b_down)
            return h, (h, q, k)

        hL, (hs, q, k) = lax.scan(block, h0, self.layers)
        final = rms_norm(hL, self.norm, cfg.eps)
        hidden = jnp.concatenate([h0[None], hs[:-1], final[None]], axis=0)
        return DecoderOutput(hidden_states=hidden, q=q, k=k)


def llama_from_state_dict(get, config: LlamaConfig, dtype) -> Llama:
    """Build a `Llama` from a tensor getter `get(name, shape)` (names without the ``model.``
    prefix, e.g. ``layers.0.self_attn.q_proj.weight``); absent biases become zeros."""
    D, F, L = config.hidden, config.intermediate, config.layers
    Hd, Gd = config.heads * config.head_dim, config.kv_heads * config.head_dim

    def arr(name, shape):
        return jnp.asarray(np.asarray(get(name, shape)), dtype)

    def stack(suffix, shape, present=True):
        if not present:
            return jnp.zeros((L, *shape), dtype)
        return jnp.stack([arr(f"layers.{i}.{suffix}", shape) for i in range(L)])

    att, mlp = "self_attn", "mlp"
    layers = LlamaLayers(
        norm1=stack("input_layernorm.weight", (D,)),
        wq=stack(f"{att}.q_proj.weight", (Hd, D)),
        bq=stack(f"{att}.q_proj.bias", (Hd,), config.qkv_bias),
        wk=stack(f"{att}.k_proj.weight", (Gd, D)),
        bk=stack(f"{att}.k_proj.bias", (Gd,), config.qkv_bias),
        wv=stack(f"{att}.v_proj.weight", (Gd, D)),
        bv=stack(f"{att}.v_proj.bias", (Gd,), config.qkv_bias),
        wo=stack(f"{att}.o_proj.weight", (D, Hd)),
        bo=stack(f"{att}.o_proj.bias", (D,), config.o_bias),
        norm2=stack("post_attention_layernorm.weight", (D,)),
        w_gate=stack(f"{mlp}.gate_proj.weight", (F, D)),
        b_gate=stack(f"{mlp}.gate_proj.bias", (F,), config.mlp_bias),
        w_up=stack(f"{mlp}.up_proj.weight", (F, D)),
        b_up=stack(f"{mlp}.up_proj.bias", (F,), config.mlp_bias),
        w_down=stack(f"{mlp}.down_proj.weight", (D, F)),
        b_down=stack(f"{mlp}.down_proj.bias", (D,), config.mlp_bias),
    )
    return Llama(
        embed=arr("embed_tokens.weight", (config.vocab_size, D)),
        layers=layers,
        norm=arr("norm.weight", (D,)),
        config=config,
    )
