"""Executing workflows: the one table `WORKFLOWS` (every command, demo included), `execute`
(validate, lock the output folder, run, save atomically), checkpoints and `resume_run`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from .._json import jsonable
from ._checkpoint import CHECKPOINT_FILE, load_checkpoint
from ._config import ConfigError, Option, coerce, resolve_config
from ._env import environment, select_device
from ._folder import (
    RunFolderError,
    RunWriter,
    write_atomic,
)
from ._format import _read_json, write_run_files
from ._run import Run, load_run
from ._workflow import Checkpointing
from .workflows import CHECKPOINTED, WORKFLOWS

RESUME_RECORD = "run.json"


def checkpoint_dir(out) -> Path:
    """Where a run into `out` started with `--checkpoint-every` keeps its checkpoint:
    the hidden sibling ``.NAME.checkpoint`` (deleted once the run is in place)."""
    out = Path(out)
    out = out.resolve() if out.name in ("", ".", "..") else out
    return out.parent / f".{out.name}.checkpoint"


def _checkpoint_every(command: str, cfg: dict, every) -> int:
    if every is None or every == 0:
        return 0
    if command not in CHECKPOINTED:
        raise ConfigError(
            f"--checkpoint-every: `meanfield {command}` does not checkpoint (only "
            f"{', '.join(CHECKPOINTED)})"
        )
    every = coerce("--checkpoint-every", Option("int", 0, "", minimum=1), every, from_text=True)
    if every % cfg["save_every"]:
        raise ConfigError(
            f"--checkpoint-every={every} must be a multiple of save_every={cfg['save_every']}"
        )
    return every


def _describe_checkpoint(ck_dir: Path) -> str:

    if not (ck_dir / CHECKPOINT_FILE).is_file():
        return "before its first checkpoint"
    try:
        ck = load_checkpoint(ck_dir)
    except ValueError as err:
        raise RunFolderError(str(err)) from None
    return f"at step {ck.step} of {ck.steps}"


def execute(
    command: str,
    config: dict,
    out,
    *,
    quiet: bool = False,
    checked: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> Run:
    """Validate `config` (unless `checked`), check that `out` may be written (refused if
    it exists, unless `overwrite`; locked against a second writer), run the workflow on
    the chosen device and precision, and save the run into `out` atomically. Every check
    comes before anything is compiled. Returns the loaded `Run`.

    **Arguments:**

    - `command`: a key of `workflows.WORKFLOWS` ("simulate", "sweep", "critical",
      "temperature", "transformer", "demo").
    - `config`: option values (defaults for the rest; `ConfigError` names a bad one).
    - `out`: the run folder; `quiet`: no progress output; `checked`: `config` is already
      resolved; `overwrite`: replace an existing run folder as a whole.
    - `checkpoint_every` (simulate): save the state every this many steps into
      `checkpoint_dir(out)`, so that `resume_run(out)` can continue a killed run;
      `resume`: how `resume_run` continues from that checkpoint.

    **Returns:** the saved `Run`, loaded back.
    """

    cfg = config if checked else resolve_config(command, config)
    every = _checkpoint_every(command, cfg, checkpoint_every)
    device = select_device(cfg["device"])
    out = Path(out)
    ck_dir = checkpoint_dir(out)
    with RunWriter(out, overwrite=overwrite) as writer:
        if ck_dir.exists() and not resume:
            if not overwrite:
                raise RunFolderError(
                    f"{out}: an interrupted run left a checkpoint "
                    f"({_describe_checkpoint(ck_dir)}) in {ck_dir}; `meanfield resume {out}` "
                    "continues it, --overwrite discards it"
                )
            shutil.rmtree(ck_dir)
        checkpoint = None
        if every:
            if not resume:
                record = {
                    "command": command,
                    "config": jsonable(cfg),
                    "checkpoint_every": every,
                    "overwrite": bool(overwrite),
                    "out": str(out),
                }
                ck_dir.mkdir(parents=True, exist_ok=True)
                text = json.dumps(record, indent=2) + "\n"
                write_atomic(ck_dir / RESUME_RECORD, lambda p: Path(p).write_text(text))
            key = np.asarray(jax.random.PRNGKey(cfg["seed"]))  # the PRNG state of the run
            checkpoint = Checkpointing(ck_dir, every, key=key)
        with jax.enable_x64(bool(cfg["x64"])), jax.default_device(device):
            _run_and_save(command, cfg, writer.path, device, quiet, checkpoint)
        writer.commit()
        shutil.rmtree(ck_dir, ignore_errors=True)
    return load_run(writer.out)


def resume_info(out) -> dict:
    """What `resume_run(out)` would continue: the command, config, `checkpoint_every`,
    `overwrite`, and `step` of `steps` done; `complete` if `out` already holds the
    finished run. A folder with nothing to resume raises a `ValueError` (one line).

    **Arguments:** `out` the run folder. **Returns:** a dict of the fields above.
    """
    out = Path(out)
    ck_dir = checkpoint_dir(out)
    record_path = ck_dir / RESUME_RECORD
    if not record_path.is_file():
        if (out / "config.json").is_file():
            raise RunFolderError(f"{out}: a complete run; nothing to resume")
        raise RunFolderError(
            f"{out}: nothing to resume (no checkpoint {ck_dir}; only runs started with "
            "--checkpoint-every can be resumed)"
        )
    info = _read_json(record_path, "resume record")
    if not isinstance(info, dict) or not {"command", "config", "checkpoint_every"} <= set(info):
        raise RunFolderError(f"{record_path}: not a meanfield resume record")

    info["step"], info["steps"] = 0, info["config"].get("steps")
    if (ck_dir / CHECKPOINT_FILE).is_file():
        try:
            ck = load_checkpoint(ck_dir)
        except ValueError as err:
            raise RunFolderError(str(err)) from None
        info["step"], info["steps"] = ck.step, ck.steps
    info["complete"] = False
    if info["step"] == info["steps"] and (out / "config.json").is_file():
        # killed after the run was moved into place, before the checkpoint was deleted
        with contextlib.suppress(ValueError):
            info["complete"] = load_run(out).config == info["config"]
    info["checkpoint_dir"] = str(ck_dir)
    return info


def resume_run(out, *, quiet: bool = False) -> Run:
    """Continue a run into `out` that was started with `checkpoint_every` and killed:
    from its last checkpoint to the same final state, bit for bit, as the uninterrupted
    run, saved into `out` atomically as usual.

    **Arguments:**

    - `out`: the run's output folder (its checkpoint is `checkpoint_dir(out)`).
    - `quiet`: no progress line.

    **Returns:**

    The saved `Run`. `resume_info(out)` tells how far the killed run got; a folder with
    nothing to resume raises a `ValueError` naming it.
    """
    out = Path(out)
    info = resume_info(out)
    if info["complete"]:
        shutil.rmtree(info["checkpoint_dir"], ignore_errors=True)
        return load_run(out)
    source = str(checkpoint_dir(out) / RESUME_RECORD)
    cfg = resolve_config(info["command"], info["config"], source=source)
    return execute(
        info["command"],
        cfg,
        out,
        quiet=quiet,
        checked=True,
        overwrite=bool(info.get("overwrite", False)),
        checkpoint_every=info["checkpoint_every"],
        resume=True,
    )


def _run_and_save(command: str, cfg: dict, out: Path, device, quiet: bool, checkpoint=None) -> None:
    """Run the workflow into the (private, staging) folder `out` and write its files."""
    start = time.perf_counter()
    workflow = WORKFLOWS[command]
    extra = {} if checkpoint is None else {"checkpoint": checkpoint}
    if workflow.composite:
        extra["execute"] = execute
    arrays, results = workflow.run(cfg, out, quiet, **extra)
    env = environment(device, cfg)
    env["seconds"] = time.perf_counter() - start
    write_run_files(out, command, cfg, arrays, results, env)
