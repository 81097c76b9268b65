"""Attention-temperature diagnostics and the particle view of a real transformer.

For every layer l, head a and query token i of a text of n tokens, the row of raw scores
s_j = <q_i, k_j> (before the 1/sqrt(d_h) scale) is softmaxed by the model at its own
inverse temperature beta_model = 1/sqrt(d_h) (0.1768 for MiniLM). docs/design.md, section 3 gives
the candidate critical scale of that row,

    beta*_n = max_k log k / Delta_(k),     Delta_(k) the sorted gaps max(s) - s_j,

where the row turns from spread (beta << beta*_n) to one-hot (beta >> beta*_n). The ratio

    r = beta_model / beta*_n   (> 1: the head works above its critical scale, near one-hot;
                                 < 1: below it, spread attention)

is summarised per head by its median over query rows. We measure:

1. beta*_n / beta_model per layer and head at several lengths n (the text cut to n tokens,
   the model re-run: a bidirectional encoder sees all n keys);
2. the causal view: on the longest text, query i restricted to keys 0..i (n = i + 1 keys);
3. growth of the median beta*_n with n, fitted by a power law c n^alpha and a log-law
   c (log n)^gamma, compared with the laws of docs/design.md, section 3 (gaussian gamma = 1/2,
   weibull(p) gamma = 1 - 1/p, planted simplex gamma = 1, finite endpoint gamma = 2,
   gumbel/exponential gamma = 0, sphere_cosine alpha = 2/(d-1)), and the Gaussian
   prediction sqrt(2 log n)/sigma_row with each row's own score spread sigma_row;
4. entropy H(beta)/log n versus beta for every head, with beta_model marked;
5. the particle view: hidden states h^l_i / |h^l_i| as points on S^{D-1}: cosine-similarity
   histograms, number of clusters and largest cluster mass per layer, against the mean-field
   SA flow dx_i/dt = P_{x_i} sum_j softmax_j(beta <x_i, x_j>) x_j started from the layer-0
   tokens (time t = l read as layer l) at beta_model and at a matched beta_eff (below).

Text: English prose from standard-library module docstrings (`stdlib_text`), so that the
numbers are reproducible without downloads (they depend on the Python version's docstrings).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._json import jsonable
from ..atoms import cluster_padded
from ..dynamics import MeanField
from ..integrate import integrate
from ..temperature import critical_beta, entropy_curve, p_max, softmax_entropy
from ._figures import plot_diagnostics
from ._load import load_minilm
from ._text import STDLIB_MODULES, stdlib_text  # noqa: F401  (re-exported)

__all__ = [
    "DEFAULT_LENGTHS",
    "LAWS",
    "STDLIB_MODULES",
    "causal_critical_beta",
    "critical_ratio_table",
    "fit_growth",
    "length_sweep",
    "masked_critical_beta",
    "particle_view",
    "run_diagnostics",
    "stdlib_text",
    "time_forward",
]


DEFAULT_LENGTHS = (16, 32, 64, 128, 256, 512)


"""Sequence lengths (tokens, [CLS] and [SEP] included) of the length sweep."""


LAWS = {
    "gumbel/exponential": {"gamma": 0.0},
    "gaussian": {"gamma": 0.5},
    "weibull(p)": {"gamma": "1 - 1/p"},
    "planted_simplex": {"gamma": 1.0},
    "finite_endpoint": {"gamma": 2.0},
    "sphere_cosine(d)": {"alpha": "2/(d-1)"},
}


"""Growth of beta*_n in docs/design.md, section 3: beta* ~ (log n)^gamma, or n^alpha."""


@jax.jit
def masked_critical_beta(
    scores: Float[Array, "... n"], key_mask: Bool[Array, "... n"]
) -> Float[Array, "..."]:
    """beta*_m = max_{1<=k<=m-1} log k / Delta_(k) over the m unmasked keys of each row.

    Masked keys are ignored (their gap is set to +inf, so they add log k / inf = 0 terms);
    rows with one unmasked key give 0; a tie at the top gives +inf (as `critical_beta`).
    Equals `meanfield.critical_beta(scores)` when nothing is masked. Shapes broadcast.
    """
    scores, key_mask = jnp.broadcast_arrays(scores, key_mask)
    top = jnp.max(jnp.where(key_mask, scores, -jnp.inf), axis=-1, keepdims=True)
    gaps = jnp.where(key_mask, top - scores, jnp.inf)
    gaps = jnp.sort(gaps, axis=-1)[..., 1:]  # drop the argmax (gap 0)
    k = jnp.arange(1, gaps.shape[-1] + 1, dtype=scores.dtype)
    finite = jnp.isfinite(gaps)
    pos = finite & (gaps > 0)
    terms = jnp.where(pos, jnp.log(k) / jnp.where(pos, gaps, 1.0), 0.0)
    tied = finite[..., :1] & (gaps[..., :1] <= 0)
    return jnp.where(tied[..., 0], jnp.inf, jnp.max(terms, axis=-1, initial=0.0))


def causal_critical_beta(logits: Float[Array, "... n n"]) -> Float[Array, "... n"]:
    """beta* of query i restricted to keys 0..i (i + 1 keys), for every i: shape (..., n).

    The causal reading of docs/design.md, section 3: "n is the number of keys a query sees".
    """
    n = logits.shape[-1]
    causal = jnp.tril(jnp.ones((n, n), bool))
    return masked_critical_beta(logits, causal)


def _row_stats(logits: Float[Array, "L H n n"], beta: float):
    """Per-row beta*_n, score std, entropy/log n and p_max at beta: four (L, H, n) arrays."""

    n = logits.shape[-1]
    bstar = critical_beta(logits, ties="ignore")
    sigma = jnp.std(logits, axis=-1)
    ent = softmax_entropy(logits, beta) / math.log(n)
    pm = p_max(logits, beta)
    return bstar, sigma, ent, pm


def length_sweep(model, text: str, lengths=DEFAULT_LENGTHS, progress=None) -> dict[str, np.ndarray]:
    """Run the model on `text` cut to each length n and summarise every head's rows.

    Returns numpy arrays (N lengths, L, H) of medians over the query rows: `beta_star`,
    `sigma` (score std of a row), `entropy_frac` (H(beta_model)/log n), `p_max`, and
    `above_frac` (fraction of rows with beta_model > beta*_n), plus `n` (N,) the actual
    token counts (shorter than asked if the text is short).
    """
    out = {k: [] for k in ("n", "beta_star", "sigma", "entropy_frac", "p_max", "above_frac")}
    for length in lengths:
        if progress is not None:
            progress(1)
        maps = model.attention(text, max_tokens=int(length))
        n = len(maps.tokens)
        if out["n"] and n == out["n"][-1]:
            continue
        bstar, sigma, ent, pm = _row_stats(maps.logits, model.beta)
        out["n"].append(n)
        out["beta_star"].append(np.median(np.asarray(bstar), axis=-1))
        out["sigma"].append(np.median(np.asarray(sigma), axis=-1))
        out["entropy_frac"].append(np.median(np.asarray(ent), axis=-1))
        out["p_max"].append(np.median(np.asarray(pm), axis=-1))
        out["above_frac"].append(np.mean(np.asarray(bstar) < model.beta, axis=-1))
    return {k: np.asarray(v) for k, v in out.items()}


def _linfit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (b, a, R^2)."""
    A = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - (a + b * x)
    ss = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / ss if ss > 0 else 1.0
    return float(b), float(a), float(r2)


def fit_growth(n, beta_star) -> dict[str, float | str]:
    """Fit beta*_n = c n^alpha and beta*_n = c (log n)^gamma (least squares in log-log).

    Arguments: n (N,) key counts (>= 3), beta_star (N,) positive values (e.g. medians).
    Returns alpha, c_power, r2_power, gamma, c_log, r2_log, the nearest docs/design.md law by
    gamma, the Weibull p = 1/(1 - gamma) implied when 0 < gamma < 1, and the sphere
    dimension d = 1 + 2/alpha implied by alpha.
    """
    n = np.asarray(n, float)
    b = np.asarray(beta_star, float)
    keep = (n >= 3) & np.isfinite(b) & (b > 0)
    n, b = n[keep], b[keep]
    if n.size < 2:
        raise ValueError("need at least two lengths n >= 3 with finite positive beta* to fit")
    alpha, a_pow, r2_pow = _linfit(np.log(n), np.log(b))
    gamma, a_log, r2_log = _linfit(np.log(np.log(n)), np.log(b))
    nearest = min(
        (
            ("gumbel/exponential", 0.0),
            ("gaussian", 0.5),
            ("planted_simplex", 1.0),
            ("finite_endpoint", 2.0),
        ),
        key=lambda item: abs(item[1] - gamma),
    )[0]
    return {
        "alpha": alpha,
        "c_power": float(np.exp(a_pow)),
        "r2_power": r2_pow,
        "gamma": gamma,
        "c_log": float(np.exp(a_log)),
        "r2_log": r2_log,
        "nearest_law": nearest,
        "weibull_p": float(1.0 / (1.0 - gamma)) if 0 < gamma < 1 else None,
        "sphere_d": float(1.0 + 2.0 / alpha) if alpha > 0 else None,
        "n_min": float(n.min()),
        "n_max": float(n.max()),
    }


def _causal_binned(bstar_causal: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Median over layers, heads and queries of causal beta* in log-spaced bins of keys."""
    keys = np.arange(1, bstar_causal.shape[-1] + 1)
    edges = np.unique(np.round(np.geomspace(4, n_max + 1, 12)).astype(int))
    centres, medians = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (keys >= lo) & (keys < hi)
        if sel.any():
            centres.append(np.exp(np.mean(np.log(keys[sel]))))
            medians.append(np.median(bstar_causal[..., sel]))
    return np.asarray(centres), np.asarray(medians)


def _normalise(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def _clusters(X: np.ndarray, cos_threshold: float) -> tuple[int, float]:
    """(number of clusters, largest cluster mass) at angular tolerance arccos(cos_threshold).

    Uses `meanfield.cluster` semantics (single linkage: linked when cos >= threshold,
    connected components, uniform masses).
    """
    tol = float(np.arccos(np.clip(cos_threshold, -1.0, 1.0)))
    # Fixed-shape clustering: one compilation per n (the trimmed `cluster` slices per count).
    Xj = jnp.asarray(X)
    m = jnp.full((X.shape[0],), 1.0 / X.shape[0], Xj.dtype)
    atoms = cluster_padded(Xj, m, jnp.asarray(tol, Xj.dtype))
    return int(atoms.count), float(atoms.largest_mass)


def _cloud_stats(X: np.ndarray, cos_threshold: float, bins: np.ndarray) -> dict:
    """Mean off-diagonal cosine, its histogram, clusters and largest mass of unit rows X."""
    G = X @ X.T
    off = G[~np.eye(len(X), dtype=bool)]
    count, largest = _clusters(X, cos_threshold)
    return {
        "mean_cos": float(off.mean()),
        "hist": np.histogram(np.clip(off, -1, 1), bins=bins, density=True)[0],
        "clusters": count,
        "largest_mass": largest,
    }


def matched_beta(hidden0: np.ndarray, logits0: np.ndarray, beta_model: float) -> float:
    """beta_eff with which sphere scores beta <x_i, x_j> have the model's spread at layer 0.

    beta_eff = median_heads,rows std_j(beta_model q_i.k_j) / median_rows std_j(<x_i, x_j>)
    with x = h^0 / |h^0|. It accounts for |h| ~ sqrt(D) and the learned W_q^T W_k.
    """
    X = _normalise(hidden0)
    sphere = np.median(np.std(X @ X.T, axis=-1))
    model = np.median(np.std(beta_model * logits0, axis=-1))
    return float(model / sphere)


def particle_view(
    hidden: Float[Array, "Lp1 n D"],
    betas: dict[str, float],
    *,
    cos_threshold: float = 0.9,
    dt: float = 0.05,
    extra_time: float = 30.0,
    bins: int = 50,
) -> dict:
    """Layer-by-layer token clouds on S^{D-1} versus the mean-field SA flow.

    Arguments:
        hidden: (L + 1, n, D) hidden states (embeddings output first).
        betas: named inverse temperatures for the SA flow dx/dt = P_x sum_j softmax(beta
            <x, x_j>) x_j from X0 = h^0/|h^0| (uniform masses), e.g. {"model": 1/sqrt(32)}.
        cos_threshold: two tokens are linked when their cosine is >= this (clusters are the
            connected components; `meanfield.cluster` with tol = arccos(cos_threshold)).
        dt: Euler step; time t = l is compared with layer l, t = 0..L, then t = L + extra_time.

    Returns {"model": [stats of layer l], "flow": {name: [stats at t = 0..L, then final]},
    "times": [...], "bin_edges": (bins + 1,)}; stats = mean_cos, hist, clusters, largest_mass.
    """
    H = _normalise(np.asarray(hidden, np.float64))
    L = H.shape[0] - 1
    edges = np.linspace(-1.0, 1.0, bins + 1)
    model_stats = [_cloud_stats(H[li], cos_threshold, edges) for li in range(L + 1)]
    X0 = jnp.asarray(H[0], dtype=hidden.dtype)
    per_unit = max(1, round(1.0 / dt))
    times = [*range(L + 1), L + round(extra_time * per_unit) / per_unit]
    flows = {}
    total = L * per_unit + int(round(extra_time * per_unit))
    keep = list(range(L + 1))  # saves are one time unit apart: xs[k] is t = k
    flows = {}
    for name, beta in betas.items():
        sa = MeanField(jnp.asarray(beta, X0.dtype), attention="sa")
        traj = integrate(sa, X0, dt=1.0 / per_unit, steps=total, save_every=per_unit)
        xs = np.asarray(traj.xs, np.float64)
        states = [*xs[keep], xs[-1]]
        flows[name] = [_cloud_stats(_normalise(S), cos_threshold, edges) for S in states]
    return {"model": model_stats, "flow": flows, "times": times, "bin_edges": edges}


def time_forward(model, n: int = 512, repeats: int = 3, attention: bool = True) -> float:
    """Median wall time (s) of the jitted forward pass of one n-token sequence, compile excluded."""
    ids = jnp.full((1, n), 1000, jnp.int32).at[0, 0].set(101).at[0, -1].set(102)
    mask = jnp.ones((1, n), bool)
    jax.block_until_ready(model.bert.batch(ids, mask, attention=attention))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(model.bert.batch(ids, mask, attention=attention))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def critical_ratio_table(ratio: np.ndarray, fmt: str = "{:.2f}") -> str:
    """Markdown table of an (L, H) array (e.g. median beta*_n / beta_model), layers as rows."""
    L, H = ratio.shape
    head = "| layer | " + " | ".join(f"h{a}" for a in range(H)) + " | median |"
    sep = "|" + "---|" * (H + 2)
    rows = [
        f"| {li} | "
        + " | ".join(fmt.format(v) for v in ratio[li])
        + f" | {fmt.format(np.median(ratio[li]))} |"
        for li in range(L)
    ]
    return "\n".join([head, sep, *rows])


def _entropy_curves(logits, beta_grid, rows: int) -> np.ndarray:
    """Mean over `rows` evenly spaced query rows of H(beta)/log n: (L, H, B)."""

    n = logits.shape[-1]
    idx = np.unique(np.linspace(0, n - 1, min(rows, n)).astype(int))
    curves = entropy_curve(logits[:, :, idx, :], jnp.asarray(beta_grid, logits.dtype))
    return np.asarray(jnp.mean(curves, axis=2)) / math.log(n)


def run_diagnostics(
    model=None,
    text: str | None = None,
    lengths=DEFAULT_LENGTHS,
    out: str | Path | None = None,
    *,
    curve_rows: int = 64,
    flow_dt: float = 0.05,
    extra_time: float = 30.0,
    cos_threshold: float = 0.9,
    timing: bool = True,
    figures: bool = True,
    progress=None,
) -> dict:
    """The whole study on one text: returns a JSON-able summary (and writes it to `out`).

    Arguments:
        model: a `MiniLM` (default `load_minilm()`).
        text: English text (default `stdlib_text()`).
        lengths: token counts of the sweep; the longest one is "the longest sequence".
        out: folder for summary.json, table.md and the figures (PNG); None writes nothing.
        progress: called with 1 after each of the len(lengths) + 4 steps (`study_steps`).

    Summary keys: meta, lengths, ratio_longest ((L, H) median beta*_n / beta_model at the
    longest n), beta_star / entropy_frac / p_max / above_frac / sigma ((N, L, H)),
    growth (fits of the median over heads: overall, per layer, causal, gaussian ratio),
    heads_above / heads_below (lists of "l.a"), particles (model and flow stats per layer),
    timing. `summary["_arrays"]` holds numpy arrays for the figures (not written to JSON).
    """

    t_start = time.perf_counter()
    model = load_minilm() if model is None else model
    text = stdlib_text() if text is None else text
    lengths = tuple(sorted(int(n) for n in lengths))
    beta = model.beta
    step = progress if progress is not None else (lambda k: None)
    sweep = length_sweep(model, text, lengths, progress=step)
    ns = sweep["n"]
    longest = model.attention(text, max_tokens=lengths[-1])
    logits = longest.logits
    ratio = sweep["beta_star"][-1] / beta

    # Growth with n: medians over heads (and per layer), truncation and causal views.
    over_heads = np.median(sweep["beta_star"].reshape(len(ns), -1), axis=1)
    growth = {"truncation": fit_growth(ns, over_heads) if len(ns) >= 2 else None}
    growth["per_layer"] = [
        fit_growth(ns, np.median(sweep["beta_star"][:, li], axis=-1)) if len(ns) >= 2 else None
        for li in range(ratio.shape[0])
    ]
    bc = np.asarray(causal_critical_beta(logits))
    centres, causal_med = _causal_binned(bc, len(longest.tokens))
    growth["causal"] = fit_growth(centres, causal_med) if len(centres) >= 2 else None
    gauss = np.sqrt(2 * np.log(ns))[:, None, None] / sweep["sigma"]
    growth["gaussian_ratio"] = np.median((sweep["beta_star"] / gauss).reshape(len(ns), -1), axis=1)

    step(1)
    # Entropy curves around the model's beta.
    beta_grid = beta * np.logspace(-2, 2, 81)
    curves = _entropy_curves(logits, beta_grid, curve_rows)

    step(1)
    # Particles.
    beta_eff = matched_beta(np.asarray(longest.hidden_states[0]), np.asarray(logits[0]), beta)
    particles = particle_view(
        longest.hidden_states,
        {"model": beta, "matched": beta_eff},
        cos_threshold=cos_threshold,
        dt=flow_dt,
        extra_time=extra_time,
    )

    step(1)
    L, H = ratio.shape
    summary = {
        "meta": {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "dtype": str(model.dtype),
            "beta_model": beta,
            "beta_matched_sphere": beta_eff,
            "layers": L,
            "heads": H,
            "tokens_longest": len(longest.tokens),
            "text_words": len(text.split()),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "cos_threshold": cos_threshold,
        },
        "lengths": ns,
        "ratio_longest": ratio,
        "ratio_longest_median": float(np.median(ratio)),
        "beta_star": sweep["beta_star"],
        "entropy_frac": sweep["entropy_frac"],
        "p_max": sweep["p_max"],
        "above_frac": sweep["above_frac"],
        "sigma": sweep["sigma"],
        "heads_above": [f"{li}.{a}" for li in range(L) for a in range(H) if ratio[li, a] < 1],
        "heads_below": [f"{li}.{a}" for li in range(L) for a in range(H) if ratio[li, a] >= 1],
        "growth": growth,
        "particles": {
            "times": particles["times"],
            "model": [{k: v for k, v in s.items() if k != "hist"} for s in particles["model"]],
            "flow": {
                name: [{k: v for k, v in s.items() if k != "hist"} for s in stats]
                for name, stats in particles["flow"].items()
            },
        },
        "timing": {},
    }
    if timing:
        summary["timing"] = {
            "forward_512_attention_s": time_forward(model, 512, attention=True),
            "forward_512_embedding_only_s": time_forward(model, 512, attention=False),
        }
    step(1)
    summary["timing"]["diagnostics_total_s"] = time.perf_counter() - t_start
    summary = jsonable(summary, nonfinite="null")
    summary["_arrays"] = {
        "ns": ns,
        "beta_star": sweep["beta_star"],
        "ratio": ratio,
        "beta_grid": beta_grid,
        "curves": curves,
        "causal_keys": centres,
        "causal_median": causal_med,
        "particles": particles,
        "beta": beta,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        public = {k: v for k, v in summary.items() if not k.startswith("_")}
        (out / "summary.json").write_text(json.dumps(public, indent=2))
        (out / "table.md").write_text(
            f"beta*_n / beta_model (median over query rows), n = {ns[-1]} tokens\n\n"
            + critical_ratio_table(ratio)
            + "\n"
        )
        if figures:
            for name, fig in plot_diagnostics(summary).items():
                fig.savefig(out / f"{name}.png", dpi=110)
    return summary


def study_steps(lengths=DEFAULT_LENGTHS) -> int:
    """Number of progress steps `run_diagnostics` reports for these lengths."""
    return len(tuple(lengths)) + 4
