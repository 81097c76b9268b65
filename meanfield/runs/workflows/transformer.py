"""`meanfield transformer`: long-context diagnostics of a checkpoint (beta*_n of causal rows
against n, critical ratios, growth laws, recommended scalings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...transformer import (
    LAW_NAMES,
    load_checkpoint,
    load_minilm,
    long_context_diagnostics,
    plot_long_context,
    run_diagnostics,
    text_ids,
)
from ...transformer._diagnostics import study_steps
from .._progress import Progress
from .._workflow import _dtype, _save_fig


def run_transformer(cfg: dict, out: Path, quiet: bool = False):
    """Long-context temperature diagnostics of a checkpoint (MiniLM by default): beta*_n of
    causal rows versus n per layer and head, critical ratios, growth laws, the recommended
    logit scale s(n); for encoders also the MiniLM study (summary.json, table.md)."""

    dtype = _dtype(cfg)
    model = load_minilm(dtype) if cfg["model"] == "minilm" else load_checkpoint(cfg["model"], dtype)
    text = Path(cfg["text"]).read_text(encoding="utf-8") if cfg["text"] else None
    limit = cfg["max_tokens"] or None
    ids = text_ids(model, text, max_tokens=limit, truncate=cfg["truncate"])  # refuse early
    study = bool(cfg["study"]) and not getattr(model, "causal", False)

    steps = model.layers + 1 + (study_steps(cfg["lengths"]) if study else 0)
    with Progress(steps, "transformer", quiet=quiet) as bar:
        res = long_context_diagnostics(
            model,
            ids=ids,
            bins=cfg["bins"],
            rows_per_bin=cfg["rows_per_bin"],
            min_keys=cfg["min_keys"],
            progress=bar.update,
        )
        summary = None
        if study:
            summary = run_diagnostics(
                model,
                text,
                tuple(cfg["lengths"]),
                out=out,
                timing=cfg["timing"],
                figures=cfg["plots"],
                progress=bar.update,
            )
    names = [
        "rows",
        "n_keys",
        "beta_star",
        "bin_n",
        "beta_star_bins",
        "ratio_bins",
        "ratio_longest",
        "law_constants",
        "law_rms",
        "best_law",
        "gamma",
        "c_gamma",
        "ratio_train",
        "s_grid",
        "s_recommended",
        "s_median",
        "s_log_n",
        "s_yarn",
    ]
    arrays = {k: np.asarray(res[k]) for k in names}
    best = np.asarray(res["best_law"]).ravel()
    results = {
        k: res[k]
        for k in ("model", "n_tokens", "beta_model", "n_train", "context", "layers", "heads")
    }
    results.update(
        window=res["window"],
        gamma_median=res["gamma_median"],
        ratio_longest_median=float(np.nanmedian(res["ratio_longest"])),
        ratio_train_median=float(np.nanmedian(res["ratio_train"])),
        heads_above_critical=int(np.sum(res["ratio_longest"] > 1)),
        best_law_counts={name: int(np.sum(best == i)) for i, name in enumerate(LAW_NAMES)},
        law_constant_medians={
            name: float(np.nanmedian(res["law_constants"][..., i]))
            for i, name in enumerate(LAW_NAMES)
        },
        text=cfg["text"] or "stdlib_text()",
    )
    files: list[str] = []
    if summary is not None:
        results["study"] = {k: v for k, v in summary.items() if not k.startswith("_")}
        files += ["summary.json", "table.md"]
        if cfg["plots"]:
            files += [
                f"{n}.png" for n in ("critical_ratio", "entropy_curves", "growth", "particles")
            ]
    if cfg["plots"]:
        for name, fig in plot_long_context(res).items():
            _save_fig(fig, out, f"long_context_{name}.png", files)
    results["files"] = files
    return arrays, results
