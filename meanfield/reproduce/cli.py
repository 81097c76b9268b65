"""`meanfield reproduce NAME [--quick] [--out DIR] [--overwrite] [--quiet] [--device D]` and
`meanfield reproduce
--list`: replay a published experiment and write a run folder with the side-by-side report.

Wired into `meanfield.runs.cli` by two lines: `add_parser(sub)` in `build_parser` (it sets the
subcommand's `func` to `main`), and the import of this module.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

from ._registry import ENTRIES
from ._report import write_result

EXAMPLES = """Examples:
  meanfield reproduce --list
  meanfield reproduce perceptron-localisation --out loc        # full size (minutes)
  meanfield reproduce metastability-staircase --quick --out stairs
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `reproduce` subcommand to an argparse subparsers object; returns it."""
    p = subparsers.add_parser(
        "reproduce",
        help="replay a published experiment with its exact setup: our numbers beside theirs",
        description="Replay a published experiment (seeds, draws, dt, stop rules and "
        "clustering as the original code has them) and write OUT with report.md (ours, "
        "theirs, difference), results.json, arrays.npz and the figure.\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="entry (see --list)")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--quick", action="store_true", help="reduced sizes (seconds; CI)")
    p.add_argument("--out", default=None, help="output folder (default reproduce_NAME)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it already holds a run"
    )
    p.add_argument("--quiet", action="store_true", help="print only disagreements and errors")
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "gpu"), help="device to run on"
    )
    p.set_defaults(func=main)
    return p


def _error(message: str) -> int:
    print(f"meanfield reproduce: error: {message}", file=sys.stderr)
    return 2


def list_entries() -> str:
    """One line per entry: name, title, citation, wall times."""
    width = max(len(n) for n in ENTRIES)
    lines = [
        f"{e.name:<{width}}  {e.title} [{e.citation}] (full {e.full_time}, --quick {e.quick_time})"
        for e in ENTRIES.values()
    ]
    return "\n".join(lines)


def main(args) -> int:
    """Run the `reproduce` subcommand from parsed `args`; returns the exit code (0: done
    and every claimed agreement holds, 1: done but some row disagrees, 2: usage)."""
    if args.list:
        print(list_entries())
        return 0
    if args.name is None:
        return _error("give an entry NAME or --list; entries: " + ", ".join(ENTRIES))
    if args.name not in ENTRIES:
        return _error(f"unknown entry {args.name!r}; entries: " + ", ".join(ENTRIES))
    entry = ENTRIES[args.name]
    out = Path(args.out or f"reproduce_{entry.name.replace('-', '_')}")
    occupied = out.exists() and not (out.is_dir() and not any(out.iterdir()))
    if occupied and not args.overwrite:
        return _error(f"{out} exists; pass --overwrite to replace it")
    if occupied and not (out / "config.json").is_file():
        return _error(f"{out} is not a run folder; --overwrite replaces run folders only")

    try:
        name = getattr(args, "device", "auto")
        device = jax.devices()[0] if name == "auto" else jax.devices(name)[0]
    except RuntimeError:
        have = ", ".join(sorted({d.platform for d in jax.devices()}))
        return _error(f"--device {name}: JAX sees no {name} (it has {have})")
    t0 = time.perf_counter()
    with jax.enable_x64(True), jax.default_device(device):
        result = entry.run(quick=args.quick)
        seconds = time.perf_counter() - t0
        run = write_result(
            entry, result, out, seconds=seconds, quick=args.quick, overwrite=args.overwrite
        )
    bad = [r for r in result.rows if r.agrees is False]
    if not getattr(args, "quiet", False):
        print(
            f"meanfield reproduce {entry.name}: {len(result.rows)} rows, "
            f"{len(bad)} disagreeing; report.md, results.json, arrays.npz and "
            f"{len(result.figures)} figure(s) in {run.path} ({seconds:.1f} s)"
        )
    for r in bad[:10]:  # even with --quiet
        print(f"  disagrees: {r.section}: {r.quantity}: ours {r.ours}, theirs {r.theirs}")
    return 0 if not bad else 1
