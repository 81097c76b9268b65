"""`meanfield temperature`: entropy collapse and beta*_n of sampled score families against
their laws.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ... import plot
from ...temperature import (
    beta_at_pmax_half,
    critical_beta,
    predicted_critical_beta,
    sample_scores,
    softmax_curves,
)
from .._config import parse_family
from .._progress import Progress
from .._workflow import _dtype, _save_fig


def run_temperature(cfg: dict, out: Path, quiet: bool = False):
    """Entropy curves H(beta)/log n and beta*_n of sampled score rows, against the laws."""

    key, dtype = jr.PRNGKey(cfg["seed"]), _dtype(cfg)
    ns = [int(n) for n in cfg["ns"]]
    specs = [parse_family(s) for s in cfg["families"]]
    grids, ent, pmx, bstar, preds, table = [], [], [], [], [], {}
    with Progress(len(specs) * len(ns), "temperature", quiet=quiet) as bar:
        for i, (name, params) in enumerate(specs):
            pred = np.asarray(predicted_critical_beta(name, np.asarray(ns), **params))
            grid = np.geomspace(pred.min() / 30, pred.max() * 10, cfg["points"])
            betas = jnp.asarray(grid, dtype)
            e_i, p_i, b_i, half = [], [], [], []
            for j, n in enumerate(ns):
                k = jr.fold_in(jr.fold_in(key, i), j)
                s = sample_scores(name, k, n, rows=cfg["rows"], dtype=dtype, **params)
                curves = softmax_curves(s, betas)
                e_i.append(np.asarray(curves.entropy, np.float64).mean(0) / math.log(n))
                p_i.append(np.asarray(curves.p_max, np.float64).mean(0))
                b_i.append(np.asarray(critical_beta(s)))
                half.append(float(np.median(np.asarray(beta_at_pmax_half(s)))))
                bar.update()
            med = [float(np.median(b)) for b in b_i]
            table[cfg["families"][i]] = {
                "family": name,
                "params": params,
                "n": ns,
                "predicted": [float(p) for p in pred],
                "measured_median": med,
                "ratio": [m / float(p) for m, p in zip(med, pred, strict=True)],
                "beta_pmax_half_median": half,
            }
            grids.append(grid)
            ent.append(np.stack(e_i))
            pmx.append(np.stack(p_i))
            bstar.append(np.stack(b_i))
            preds.append(pred)
    arrays = {
        "ns": np.asarray(ns),
        "betas": np.stack(grids),
        "entropy": np.stack(ent),
        "p_max": np.stack(pmx),
        "beta_star": np.stack(bstar),
        "predicted": np.stack(preds),
    }
    results = {"families": table}
    files: list[str] = []
    if cfg["plots"]:
        fig = plot.entropy_panels(
            arrays["betas"],
            arrays["entropy"],
            ns,
            list(cfg["families"]),
            predicted=arrays["predicted"],
            measured=np.median(arrays["beta_star"], axis=-1),
            normalised=True,
        )
        _save_fig(fig, out, "entropy.png", files)
        fig = plot.critical_ratios(ns, {k: v["ratio"] for k, v in table.items()})
        _save_fig(fig, out, "ratios.png", files)
    results["files"] = files
    return arrays, results
