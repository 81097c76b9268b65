"""Long-context temperature diagnostics of a checkpoint (arXiv 2605.12697 in its setting).

For a long text of N tokens and every layer l and head a, query i of a causal model sees
the n_i = i + 1 keys 0..i (fewer under a sliding window). Its raw score row
s_j = <q^a_i, k^a_j> (before the model's scale beta_model, usually 1/sqrt(d_h)) has the
critical inverse temperature of docs/design.md, section 3,

    beta*_n = max_{1 <= k <= n-1} log k / Delta_(k),   Delta_(k) the sorted gaps of the row,

computed with `meanfield.critical_beta(rows, where=visible)`. We read it as a function of the
row length n: the query rows are grouped into log-spaced bins of n and each head's median
beta*_n per bin is kept, beta*(n). Then per head:

* the critical ratio r(n) = beta_model / beta*(n) (> 1: the head runs above its critical
  scale, near one-hot; < 1: spread);
* the growth laws of the paper, beta*(n) = c f(n) with f = sqrt(log n), log n, (log n)^2
  (the constant c fitted in log space, log c = mean(log beta* - log f), with the rms log
  residual; the smallest residual is the head's law), and the free fit
  beta*(n) = c (log n)^gamma;
* the recommended length-dependent logit scale s(n): multiplying the logits by s(n) keeps
  r at its value at the training length n_train, s(n) beta_model / beta*(n) =
  beta_model / beta*(n_train), i.e.

      s(n) = beta*(n) / beta*(n_train) = (log n / log n_train)^gamma    (free fit),

  side by side with the scalings used in practice: log-n scaling s(n) = log n / log n_train
  (gamma = 1) and YaRN's attention factor m = 0.1 ln(n / n_train) + 1 for n > n_train,
  which multiplies q and k, so the logits by m^2 (1 for n <= n_train).

Memory: one forward pass (one head's n x n at a time inside it), then per layer only the
sampled rows, (H, R, N) scores for R query rows: never all heads' N x N at once. The n = 4096
case runs in well under 4 GB (tests/test_long_context.py measures the peak in a subprocess).
Encoders (MiniLM, BERT) are read with the same causal restriction (query i against keys
0..i), as `causal_critical_beta` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..temperature import critical_beta
from ._decoder import visible
from ._text import stdlib_text

__all__ = [
    "LAW_NAMES",
    "fit_laws",
    "long_context_diagnostics",
    "practical_scalings",
    "row_positions",
    "sampled_rows_critical_beta",
    "text_ids",
]

#: The growth laws of the paper: name -> f(n).
LAW_NAMES = ("sqrt_log", "log", "log_squared")
_LAWS = {
    "sqrt_log": lambda n: np.sqrt(np.log(n)),
    "log": lambda n: np.log(n),
    "log_squared": lambda n: np.log(n) ** 2,
}


def row_positions(
    n_tokens: int, *, bins: int = 24, rows_per_bin: int = 8, min_keys: int = 4, window=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query rows to sample: (rows (R,), keys per row n_i (R,), edges (B + 1,)).

    Bins of n are log-spaced from `min_keys` to the longest row; each bin contributes up to
    `rows_per_bin` evenly spaced rows. Row i sees n_i = i + 1 keys (min(i + 1, window)).
    """
    if n_tokens < min_keys:
        raise ValueError(f"the text has {n_tokens} tokens; need at least min_keys={min_keys}")
    keys_of = np.minimum(np.arange(n_tokens) + 1, window or n_tokens)
    top = int(keys_of.max())
    edges = np.unique(np.round(np.geomspace(min_keys, top + 1, bins + 1)).astype(int))
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        cand = np.flatnonzero((keys_of >= lo) & (keys_of < hi))
        if cand.size:
            pick = np.unique(np.round(np.linspace(0, cand.size - 1, rows_per_bin)).astype(int))
            rows.append(cand[pick])
    rows = np.unique(np.concatenate(rows))
    return rows, keys_of[rows], edges


def _queries_keys(model, ids):
    """(hidden, q (L, H, N, d), k (L, G, N, d)) of one sequence, for any loaded model."""
    if hasattr(model, "forward") and getattr(model, "causal", False):
        out = model.forward(ids)
        return out.hidden_states, out.q, out.k
    return model.queries_keys(ids)


@jax.jit
def _layer_rows(q, k, rows):
    """Scores (H, R, N) of the sampled query rows of one layer (kv heads repeated)."""
    per = q.shape[0] // k.shape[0]
    k = jnp.repeat(k, per, axis=0)
    return jnp.einsum("hrd,hjd->hrj", q[:, rows], k, precision=jax.lax.Precision.HIGHEST)


def sampled_rows_critical_beta(
    model, ids, rows, *, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """beta*_n of the sampled causal rows for every layer and head.

    Row r (query position rows[r]) keeps keys j <= rows[r] (and within the sliding window);
    the others are masked with `where=`, so each value is the critical scale of the shorter
    row of the keys that query actually sees (ties at the top ignored: ``ties="ignore"``).
    One forward pass, then per layer the (H, R, N) scores of the sampled rows only.

    **Arguments:**
        model: a loaded model (`Decoder` or `BertEncoder`).
        ids: (N,) token ids.
        rows: (R,) query positions (e.g. from `row_positions`).
        progress: called with 1 after each layer.

    **Returns:** (L, H, R) float array, beta*_{n_r} for n_r the keys row r sees.
    """

    ids = np.asarray(ids, np.int32)
    _, q, k = _queries_keys(model, ids)
    rows_j = jnp.asarray(rows)
    vis = visible(rows_j, ids.size, getattr(model, "window", None))
    out = []
    for layer in range(q.shape[0]):
        scores = _layer_rows(q[layer], k[layer], rows_j)
        out.append(np.asarray(critical_beta(scores, where=vis[None], ties="ignore")))
        if progress is not None:
            progress(1)
    return np.stack(out)


def fit_laws(n: np.ndarray, beta_star: np.ndarray) -> dict[str, np.ndarray]:
    """Fit beta*(n) = c f(n) for the three laws and c (log n)^gamma, along the last axis.

    **Arguments:** n (B,) row lengths (> e, so log log n is defined), beta_star (..., B)
    positive values (non-finite or non-positive entries are ignored).

    **Returns:** constants (..., 3) and rms (..., 3) (rms of log beta* - log(c f(n))) in
    `LAW_NAMES` order, best (...,) the index of the smallest rms, gamma (...,), c_gamma
    (...,) and rms_gamma (...,) of the free fit (least squares of log beta* on log log n).
    """
    n = np.asarray(n, np.float64)
    b = np.asarray(beta_star, np.float64)
    ok = np.isfinite(b) & (b > 0) & (n > math.e)
    logb = np.where(ok, np.log(np.where(ok, b, 1.0)), 0.0)
    cnt = np.maximum(ok.sum(-1), 1)
    consts, rms = [], []
    for name in LAW_NAMES:
        lf = np.log(_LAWS[name](n))
        logc = np.sum(np.where(ok, logb - lf, 0.0), -1) / cnt
        res = np.where(ok, logb - lf - logc[..., None], 0.0)
        consts.append(np.exp(logc))
        rms.append(np.sqrt(np.sum(res**2, -1) / cnt))
    x = np.log(np.log(n))
    xm = np.sum(np.where(ok, x, 0.0), -1) / cnt
    ym = np.sum(logb, -1) / cnt
    dx = np.where(ok, x - xm[..., None], 0.0)
    dy = np.where(ok, logb - ym[..., None], 0.0)
    sxx = np.sum(dx**2, -1)
    gamma = np.where(sxx > 0, np.sum(dx * dy, -1) / np.where(sxx > 0, sxx, 1.0), np.nan)
    c_gamma = np.exp(ym - gamma * xm)
    rms_gamma = np.sqrt(np.sum(np.where(ok, dy - gamma[..., None] * dx, 0.0) ** 2, -1) / cnt)
    rms = np.stack(rms, -1)
    return {
        "constants": np.stack(consts, -1),
        "rms": rms,
        "best": np.argmin(rms, -1),
        "gamma": gamma,
        "c_gamma": c_gamma,
        "rms_gamma": rms_gamma,
    }


def practical_scalings(n: np.ndarray, n_train: int) -> dict[str, np.ndarray]:
    """Logit multipliers used in practice, on a grid n: log-n scaling log n / log n_train,
    and YaRN's (0.1 ln(n / n_train) + 1)^2 (its factor applies to q and k) for n > n_train."""
    n = np.asarray(n, np.float64)
    yarn = np.where(n > n_train, 0.1 * np.log(np.maximum(n / n_train, 1.0)) + 1.0, 1.0)
    return {"log_n": np.log(n) / math.log(n_train), "yarn": yarn**2}


def text_ids(model, text=None, *, ids=None, max_tokens=None, truncate=False) -> np.ndarray:
    """Token ids (N,) of `text` (default `stdlib_text()`, windowed to the context since it is
    ours) or of given `ids`; a user's input longer than `max_tokens` (default: the context)
    raises ValueError with the limit unless ``truncate=True`` (keep its first tokens)."""

    if ids is not None:
        return model.token_ids(np.asarray(ids), max_tokens, truncate=truncate)[1]
    default = text is None
    text = stdlib_text() if default else text
    if not isinstance(text, str) or not text.strip():
        raise ValueError("`text` is empty")
    return model.token_ids(text, max_tokens, truncate=truncate or default)[1]


def long_context_diagnostics(
    model,
    text: str | None = None,
    *,
    ids=None,
    max_tokens: int | None = None,
    truncate: bool = False,
    bins: int = 24,
    rows_per_bin: int = 8,
    min_keys: int = 4,
    extrapolate: float = 8.0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """beta*_n of causal rows versus n per layer and head, critical ratios, growth laws and
    the recommended logit scale s(n) (module docstring).

    **Arguments:**
        model: a loaded model (`load_checkpoint(...)` or `load_minilm()`).
        text: the long text (default `stdlib_text()`, windowed to the context since it is
            ours); a user's text longer than `max_tokens` (default: the context) is refused
            with the limit unless ``truncate=True``, which keeps its first tokens.
        ids: token ids instead of a text.
        bins, rows_per_bin, min_keys: the sampled query rows (`row_positions`).
        extrapolate: the s(n) grid runs to this multiple of max(n_train, N).
        progress: called with 1 after the forward pass and after each layer.

    **Returns:** a dict of NumPy arrays and numbers: n_tokens, beta_model, n_train, context,
    rows (R,), n_keys (R,), beta_star (L, H, R), bin_n (B,) (geometric mean of n per bin),
    beta_star_bins (L, H, B) (median per bin), ratio_bins (L, H, B) = beta_model /
    beta_star_bins, ratio_longest (L, H), law_constants / law_rms (L, H, 3) in `LAW_NAMES`
    order, best_law (L, H), gamma / c_gamma (L, H), ratio_train (L, H) (r at n_train from
    the free fit), s_grid (S,), s_recommended (L, H, S), s_median (S,) (with the median
    gamma), s_log_n (S,), s_yarn (S,).
    """
    ids = text_ids(model, text, ids=ids, max_tokens=max_tokens, truncate=truncate)
    N = int(ids.size)
    window = getattr(model, "window", None)
    rows, n_keys, edges = row_positions(
        N, bins=bins, rows_per_bin=rows_per_bin, min_keys=min_keys, window=window
    )
    if progress is not None:
        progress(0)
    bstar = sampled_rows_critical_beta(model, ids, rows, progress=progress)
    L, H, _ = bstar.shape
    beta = float(model.beta)

    bin_of = np.searchsorted(edges, n_keys, side="right") - 1
    used = np.unique(bin_of)
    bin_n = np.asarray([np.exp(np.mean(np.log(n_keys[bin_of == b]))) for b in used])
    finite = np.where(np.isfinite(bstar), bstar, np.nan)
    with np.errstate(all="ignore"):
        med = np.stack([np.nanmedian(finite[..., bin_of == b], -1) for b in used], -1)
    with np.errstate(divide="ignore"):
        ratio = beta / med
    fit = fit_laws(bin_n, med)
    n_train = int(model.train_length)
    with np.errstate(over="ignore", invalid="ignore"):
        b_train = fit["c_gamma"] * np.log(n_train) ** fit["gamma"]
        ratio_train = beta / b_train
    grid = np.unique(
        np.round(np.geomspace(max(min_keys, 4), extrapolate * max(n_train, N), 64)).astype(int)
    )
    lg = np.log(grid) / math.log(n_train)
    s_rec = lg[None, None, :] ** fit["gamma"][..., None]
    g_med = float(np.nanmedian(fit["gamma"]))
    practical = practical_scalings(grid, n_train)
    return {
        "model": getattr(model, "name", type(model).__name__),
        "n_tokens": N,
        "beta_model": beta,
        "n_train": n_train,
        "context": int(model.context),
        "window": window,
        "layers": L,
        "heads": H,
        "laws": list(LAW_NAMES),
        "rows": rows,
        "n_keys": n_keys,
        "beta_star": bstar,
        "bin_n": bin_n,
        "beta_star_bins": med,
        "ratio_bins": ratio,
        "ratio_longest": ratio[..., -1],
        "law_constants": fit["constants"],
        "law_rms": fit["rms"],
        "best_law": fit["best"],
        "gamma": fit["gamma"],
        "c_gamma": fit["c_gamma"],
        "ratio_train": ratio_train,
        "gamma_median": g_med,
        "s_grid": grid,
        "s_recommended": s_rec,
        "s_median": lg**g_med,
        "s_log_n": practical["log_n"],
        "s_yarn": practical["yarn"],
    }
