"""The one "auto" policy (`select_kernel`), its use by every entry point, and bad input."""

import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield import kernels
from meanfield.integrate import shard_ensemble
from meanfield.kernels import select_kernel

F32, F64, BF16 = jnp.float32, jnp.float64, jnp.bfloat16


def test_cpu_choices_are_the_tuned_ones():
    assert select_kernel(100, 3, dtype=F32, backend="cpu") == kernels.Tiled()
    assert select_kernel(512, 64, dtype=F64, backend="cpu") == kernels.Dense()
    assert select_kernel(10_000, 3, dtype=F32, backend="cpu") == kernels.Tiled(512, 1024)
    # spectral on S^1 / S^2 when it pays, with the order rounded up to a power of two
    spec = select_kernel(100_000, 2, dtype=F32, backend="cpu", beta=10.0, self_interaction=True)
    assert isinstance(spec, kernels.Spectral) and spec.order & (spec.order - 1) == 0
    assert spec.order >= kernels.spectral_order(10.0, 2, 1e-12)
    assert isinstance(
        select_kernel(100_000, 3, dtype=F32, backend="cpu", beta=10.0, self_interaction=True),
        kernels.Spectral,
    )
    # not for cross sums, other dimensions, small n or an unknown beta
    for kw in (
        dict(n=100_000, d=2, beta=10.0),
        dict(n=100_000, d=5, beta=10.0, self_interaction=True),
        dict(n=1_000, d=2, beta=10.0, self_interaction=True),
        dict(n=100_000, d=2, self_interaction=True),
    ):
        assert not isinstance(select_kernel(dtype=F64, backend="cpu", **kw), kernels.Spectral)
    # nearby betas share one order (one compilation)
    orders = {
        select_kernel(100_000, 2, dtype=F32, beta=b, self_interaction=True, backend="cpu").order
        for b in (3.0, 5.0, 8.0)
    }
    assert len(orders) == 1


def test_accelerator_choices():
    gpu = dict(backend="gpu")
    big = 1 << 18
    assert select_kernel(big, 64, dtype=BF16, **gpu) == kernels.Attention("cudnn")
    assert select_kernel(big, 64, dtype=jnp.float16, **gpu) == kernels.Attention("cudnn")
    assert isinstance(select_kernel(big, 3, dtype=F32, **gpu), kernels.Flash)
    assert select_kernel(big, 3, dtype=F64, **gpu) == kernels.Tiled(4096, 4096)
    assert select_kernel(big, 512, dtype=F32, **gpu) == kernels.Tiled(4096, 4096)
    # ensembles of tiny systems: matmul scores, never the broadcast sum on an accelerator
    for dtype in (F32, F64, BF16):
        assert select_kernel(32, 2, dtype=dtype, batch=90 * 2048, **gpu) == kernels.Dense("matmul")
    assert select_kernel(big, 3, dtype=F32, backend="tpu") == kernels.Tiled(4096, 4096)
    assert select_kernel(big, 3, dtype=BF16, backend="tpu") == kernels.Attention("xla")


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
@pytest.mark.parametrize("n, d", [(16, 3), (1 << 12, 3), (1 << 18, 64), (1 << 18, 3)])
def test_float64_never_goes_to_a_kernel_that_cannot_do_it(backend, n, d):
    kernel = select_kernel(n, d, dtype=F64, backend=backend)
    assert kernel.supports_float64
    kernel.check(n, d, F64)


def test_large_beta_picks_the_centred_kernel():
    threshold = kernels.centred_beta_threshold(F64)
    assert threshold == pytest.approx(36.04, abs=0.01)
    chosen = select_kernel(5, 2, dtype=F64, beta=threshold + 1, self_interaction=True)
    assert chosen == kernels.Centred()
    pure = dict(self_interaction=True, native=False)  # without the native Fused loop
    below = select_kernel(5, 2, dtype=F64, beta=threshold - 1, **pure)
    assert below == kernels.Tiled()
    # float32 keeps the fast kernels (its own floor is 1e-7); Centred on request only
    assert select_kernel(5, 2, dtype=F32, beta=4000.0, **pure) == kernels.Tiled()
    big = select_kernel(8192, 2, dtype=F64, beta=4000.0, **pure)
    assert big == kernels.Symmetric()  # beyond Centred's sizes
    # with it, the fused loop (exact at any beta: its fall-back keeps far rows)
    fused = dict(self_interaction=True, native=True)
    assert select_kernel(5, 2, dtype=F64, beta=threshold - 1, **fused) == kernels.Fused()
    assert select_kernel(8192, 2, dtype=F64, beta=4000.0, **fused) == kernels.Fused()
    assert select_kernel(5, 2, dtype=F64, beta=threshold + 1, **fused) == kernels.Centred()
    assert select_kernel(5, 2, dtype=F64, beta=4000.0) == kernels.Tiled()  # cross sums


def test_policy_and_reprs_say_what_runs():
    assert repr(kernels.Tiled(4096, 4096)) == "Tiled(block_q=4096, block_k=4096)"
    assert "cudnn" in repr(kernels.Attention("cudnn"))
    # the resolved model holds the chosen instance
    model = mf.MeanField(3.0).resolve_kernel(10_000, 3, dtype=F32)
    assert model.kernel == select_kernel(10_000, 3, dtype=F32, beta=3.0, self_interaction=True)


def test_every_entry_point_resolves_auto_outside_jit(getkey, monkeypatch):
    # At beta = 100 > 36 (float64) "auto" must choose Centred from the concrete beta, once,
    # before compiling; inside jit beta is traced and the choice would be Dense. A spy on
    # Centred.tangent_stats records every trace that uses it.
    traced = []
    original = kernels.Centred.tangent_stats

    def spy(self, X, beta, log_w):
        traced.append(X.shape)
        return original(self, X, beta, log_w)

    monkeypatch.setattr(kernels.Centred, "tangent_stats", spy)
    X0 = mf.retract(jnp.array([1.0, 0.0, 0.0]) + 0.1 * jr.normal(getkey(), (16, 3)))
    auto = mf.MeanField(100.0, attention="sa")
    entry_points = {
        "velocity": lambda: auto.velocity(X0),
        "integrate": lambda: mf.integrate(auto, X0, dt=1e-3, steps=4),
        "integrate_until": lambda: mf.integrate_until(auto, X0, dt=1e-3, max_steps=20),
        "ensemble": lambda: mf.ensemble(
            auto, jr.PRNGKey(3), n=8, d=2, seeds=2, dt=1e-3, steps=3, betas=[50.0, 100.0]
        ),
        "shard_ensemble": lambda: shard_ensemble(
            auto, jr.PRNGKey(3), n=8, d=2, seeds=2, dt=1e-3, steps=3, betas=[50.0, 100.0]
        ),
        "integrate_diffrax": lambda: mf.integrate_diffrax(auto, X0, t1=1e-3),
        "stationarity_residual": lambda: mf.stationarity_residual(auto, X0, field="model"),
    }
    for name, run in entry_points.items():
        traced.clear()
        jax.clear_caches()
        run()
        assert traced, name
    # the velocities differ from Dense's in the last bits (difference form)
    v = auto.velocity(X0)
    np.testing.assert_array_equal(v, auto.with_kernel(kernels.Centred()).velocity(X0))
    assert not np.array_equal(v, auto.with_kernel("dense").velocity(X0))


# ---------------------------------------------------------------------------- bad input
def _fast(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_a_kernel_asked_for_what_it_cannot_do_raises_before_compiling(getkey):
    X4 = mf.uniform_sphere(getkey(), 20, 4)
    with pytest.raises(kernels.KernelError, match=r"Spectral.*d in \(2, 3\)"):
        mf.MeanField(1.0, kernel="spectral").velocity(X4)
    X2 = mf.uniform_sphere(getkey(), 20, 2)
    with pytest.raises(kernels.KernelError, match="Spectral.*values must be the keys"):
        kernels.Spectral(1e-9, 8).stats(X2, X2, jnp.ones((20, 2)), 1.0, jnp.zeros(20))
    with pytest.raises(kernels.KernelError, match="Attention.*float64"):
        mf.MeanField(1.0, kernel="attention").velocity(mf.uniform_sphere(getkey(), 20, 3))
    with pytest.raises(kernels.KernelError, match="Flash.*head sizes up to 256"):
        mf.MeanField(1.0, kernel="flash").velocity(mf.uniform_sphere(getkey(), 20, 300))
    with pytest.raises(kernels.KernelError, match="cuDNN attention takes float16"):
        kernels.Attention("cudnn").check(10, 3, F32)
    with pytest.raises(kernels.KernelError, match="Spectral.*traced beta needs an explicit"):
        kernels.Spectral().prepare(10, 2, F64)
    with pytest.raises(ValueError, match="spectral"):
        mf.MeanField(1.0, attention="general", kernel="spectral")


def test_unknown_kernel_name_lists_the_registry():
    with pytest.raises(ValueError, match="one of .*'dense'.*'flash'.*'ring'"):
        mf.MeanField(1.0, kernel="fft")
    with pytest.raises(ValueError, match="backend"):
        select_kernel(10, 3, dtype=F32, backend="quantum")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: kernels.Dense(scores="einsum"), "scores"),
        (lambda: kernels.Tiled(block_q=0), "block_q"),
        (lambda: kernels.Flash(block_q=24), "power of two"),
        (lambda: kernels.Tiled(precision="tf32"), "precision"),
        (lambda: kernels.Attention(implementation="triton"), "implementation"),
        (lambda: kernels.Attention(normaliser="nope"), "normaliser"),
        (lambda: kernels.Spectral(tol=0.0), "spectral_tol"),
        (lambda: kernels.Ring(kernels.Ring()), "single-device"),
    ],
)
def test_bad_kernel_fields(make, match):
    with pytest.raises(kernels.KernelError, match=match):
        make()
