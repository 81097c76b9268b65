"""The native loop of `Fused`: built from `fused.cc` with the machine's C++ compiler on
first use, cached, and registered as an XLA FFI target for the CPU.

The library is compiled once per source, compiler, jaxlib and CPU (`-march=native`: the
vector width is the host's), into `$MEANFIELD_CACHE_DIR` (default
`$XDG_CACHE_HOME/meanfield` or `~/.cache/meanfield`), written under a temporary name and
renamed, so concurrent processes never load a half-written file. `MEANFIELD_NATIVE=0`
turns the native loop off (then `Fused` is unavailable and "auto" does not pick it); `CXX`
names the compiler (default: the first of c++, g++, clang++ on the PATH).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import numpy as np
from jaxlib import version as _jaxlib

SOURCE = Path(__file__).with_name("fused.cc")
TARGETS = {"float32": "meanfield_fused_f32", "float64": "meanfield_fused_f64"}
_SYMBOLS = {"float32": "MeanfieldFusedF32", "float64": "MeanfieldFusedF64"}
EXP_SUM_TARGET = "meanfield_exp_sum_f32"
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-w")
#: Seconds a compilation may take before it is given up.
COMPILE_TIMEOUT_S = 300
log = logging.getLogger("meanfield")


class NativeUnavailable(RuntimeError):
    """The native loop cannot be built or loaded here (the message says why)."""


def cache_dir() -> Path:
    """Where built libraries are kept."""
    if "MEANFIELD_CACHE_DIR" in os.environ:
        return Path(os.environ["MEANFIELD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "meanfield"


def _compiler() -> str:
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        if shutil.which(name):
            return name
    raise NativeUnavailable("no C++ compiler on the PATH (set CXX)")


def _cpu_signature() -> str:
    """The host's instruction-set flags (a library built with -march=native is only valid
    on a CPU that has them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise NativeUnavailable(f"the compiler {cxx!r} does not run: {err}") from None
    return out.stdout


def _compile(cxx: str, flags: tuple[str, ...], target: Path) -> str | None:
    """Compile into `target` atomically; None on success, else the compiler's message."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as err:
        return f"cannot write to the cache folder {target.parent} ({err.strerror})"
    cmd = [cxx, *FLAGS, *flags, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        if out.returncode != 0:
            lines = (out.stderr or out.stdout).strip().splitlines()
            return lines[-1] if lines else f"exit status {out.returncode}"
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build() -> Path:
    """The path of the built library for this host (compiled now if not cached).
    Raises `NativeUnavailable` with the reason when it cannot be built."""
    cxx = _compiler()
    jaxlib_version = _jaxlib.__version__
    key = hashlib.sha256()
    parts = (
        SOURCE.read_bytes(),
        _version(cxx).encode(),
        " ".join(FLAGS).encode(),
        f"{jax.ffi.include_dir()} {jaxlib_version}".encode(),
        _cpu_signature().encode(),
    )
    for part in parts:
        key.update(part)
    target = cache_dir() / f"fused-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    log.info("meanfield: compiling the Fused kernel's native loop (once, about 15 s)")
    # -march=native where the compiler knows it, else the baseline instruction set.
    for flags in (("-march=native",), ()):
        error = _compile(cxx, flags, target)
        if error is None:
            return target
    raise NativeUnavailable(f"compiling {SOURCE.name} with {cxx} failed: {error}")


def status() -> tuple[bool, str]:
    """(available, reason): `MEANFIELD_NATIVE` (read at every call), then `load`."""
    if os.environ.get("MEANFIELD_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False, "MEANFIELD_NATIVE turns the native loop off"
    return load()


@functools.cache
def load() -> tuple[bool, str]:
    """(loaded, reason): build and register the FFI targets, once per process."""
    try:
        lib = ctypes.CDLL(str(build()))
        for dtype, target in TARGETS.items():
            capsule = jax.ffi.pycapsule(getattr(lib, _SYMBOLS[dtype]))
            jax.ffi.register_ffi_target(target, capsule, platform="cpu")
        capsule = jax.ffi.pycapsule(lib.MeanfieldExpSumF32)
        jax.ffi.register_ffi_target(EXP_SUM_TARGET, capsule, platform="cpu")
    except NativeUnavailable as err:
        return False, str(err)
    except (OSError, AttributeError) as err:
        return False, f"loading the native library failed: {err}"
    return True, ""


def available() -> bool:
    """Whether `Fused`'s native loop runs here: built (compiled on the first call, then
    cached on disk) and registered, and not turned off by `MEANFIELD_NATIVE=0`."""
    return status()[0]


def require() -> None:
    """Build and register the library, or raise `NativeUnavailable` with the reason."""
    ok, why = status()
    if not ok:
        raise NativeUnavailable(why)


def self_sums(X, beta, log_w, layout: int):
    """The FFI call: X (..., n, d) (layout 0) or (..., d, n, S) (layout 1), float32 or
    float64; beta (...,) one per system; log_w (..., n) shared by whole groups of systems.

    **Returns:** (C, s, A): the row shifts C_i = h_i + M and row sums s_i (X's layout
    without the coordinate axis) and the weighted sums A_i (X's layout), so that
    L = C + log s and Y = A / s (fused.cc)."""
    require()
    dtype = np.dtype(X.dtype)
    row_shape = X.shape[:-1] if layout == 0 else X.shape[:-3] + X.shape[-2:]
    rows = jax.ShapeDtypeStruct(row_shape, dtype)
    call = jax.ffi.ffi_call(
        TARGETS[dtype.name],
        (rows, rows, jax.ShapeDtypeStruct(X.shape, dtype)),
        vmap_method="broadcast_all",
    )
    return call(X, beta, log_w, layout=np.int64(layout))


def exp_sum(a):
    """sum_i e^{a_i} of a float32 array by the native loop's vector exponential: what
    `benchmarks/bench_fair.py` times to include this exponential's rate in its floor."""
    require()
    call = jax.ffi.ffi_call(EXP_SUM_TARGET, jax.ShapeDtypeStruct((), np.float32))
    return call(a.astype(np.float32).reshape(-1))
