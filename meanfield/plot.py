"""Matplotlib figures for meanfield runs. Every function returns the Figure it drew.

Figures (each takes `ax=` to draw into an existing axes where that makes sense):

    circle_trajectory(traj)        angle of every particle versus time (d = 2)
    sphere_scatter(X)              points on S^2 with the sphere drawn (d = 3)
    snapshots(traj, times)         the particles at chosen times (d = 2: circle, d = 3: S^2)
    energy_curve(ts, F)            energy versus time (the staircase of metastable plateaus)
    cosine_histogram(X)            histogram of <x_i, x_j> over pairs
    sweep_curve(betas, values)     a quantity versus beta (with a band over seeds)
    phase_diagram(ts, betas, v)    any quantity over (t, beta) (seed mean), with a colour bar
    largest_mass(betas, masses)    largest-cluster mass versus beta, the d = 2 mass bound and
                                   its limit 16 / (16 + 3 e^{11/8})
    entropy_curves(betas, H, ns)   H(beta) / log n (H in nats) versus beta for several n
    entropy_panels(...)            one entropy_curves panel per score family
    critical_ratios(ns, ratios)    measured / predicted beta*_n versus n
    atoms(X, locations, masses)    particles and their atoms (marker area ~ mass)
    animate(traj, path)            a GIF (Pillow) or MP4 (ffmpeg) of a trajectory
    save(fig, path)                tight layout, write, close

matplotlib is imported lazily and picks its own backend (Agg on a headless machine, the inline
backend in a notebook, so executed notebooks keep their figures). Inputs may be JAX or NumPy
arrays. Extra keyword arguments of every function go to the matplotlib call that draws the
data (`ax.plot`, `ax.scatter`, `ax.hist`, `ax.pcolormesh`), e.g. `color=`, `lw=`, `cmap=`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .critical import MASS_BOUND_LIMIT


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(6, 4), projection=None):
    """(fig, ax): the given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = _plt().figure(figsize=figsize)
    return fig, fig.add_subplot(projection=projection)


def _traj_arrays(trajectory):
    return np.asarray(trajectory.ts), np.asarray(trajectory.xs)


def _draw_sphere(ax) -> None:
    u, v = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 15j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_zlabel("x3")


def _draw_circle(ax) -> None:
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.8", lw=1)
    ax.set_aspect("equal")
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def circle_trajectory(trajectory, ax=None, title: str = "Particles on the circle", **kwargs):
    """Angle of every particle versus time (one line per particle); d = 2 only."""
    ts, xs = _traj_arrays(trajectory)
    if xs.shape[-1] != 2:
        raise ValueError(f"circle_trajectory needs d = 2 points; got d = {xs.shape[-1]}.")
    theta = np.arctan2(xs[..., 1], xs[..., 0])
    fig, ax = _axes(ax, (7, 4))
    # Plot the unwrapped angle so a particle crossing +-pi does not draw a vertical jump.
    ax.plot(ts, np.unwrap(theta, axis=0), **{"lw": 0.7, "alpha": 0.8, **kwargs})
    ax.set_xlabel("time t")
    ax.set_ylabel("angle theta_i(t) [rad, unwrapped]")
    ax.set_title(title, fontsize=10)
    return fig


def sphere_scatter(X, ax=None, title: str = "Particles on S^2", color=None, label=None, **kwargs):
    """3D scatter of points on S^2 with a wireframe sphere."""
    X = np.asarray(X)
    if X.shape[-1] != 3:
        raise ValueError(f"sphere_scatter needs d = 3 points; got d = {X.shape[-1]}.")
    fig, ax = _axes(ax, (5, 5), projection="3d")
    if not getattr(ax, "_meanfield_sphere", False):
        _draw_sphere(ax)
        ax._meanfield_sphere = True
    kw = {"s": 8, "c": color, "label": label, "depthshade": False, **kwargs}
    ax.scatter(X[:, 0], X[:, 1], X[:, 2], **kw)
    ax.set_title(title, fontsize=10)
    return fig


def _times_to_indices(ts, times, panels: int):
    if times is None:
        return np.unique(np.linspace(0, len(ts) - 1, panels).round().astype(int))
    return np.array([int(np.argmin(np.abs(ts - t))) for t in times])


def snapshots(trajectory, times=None, *, panels: int = 4, title: str | None = None, **kwargs):
    """The particles at chosen times (nearest saved states; default `panels` evenly spaced
    saves): points on the unit circle for d = 2, on the sphere S^2 for d = 3."""
    plt = _plt()
    ts, xs = _traj_arrays(trajectory)
    d = xs.shape[-1]
    if d not in (2, 3):
        raise ValueError(f"snapshots needs d = 2 or 3 points; got d = {d}.")
    idx = _times_to_indices(ts, times, panels)
    fig = plt.figure(figsize=(3.2 * len(idx), 3.4))
    for k, i in enumerate(idx):
        if d == 3:
            ax = fig.add_subplot(1, len(idx), k + 1, projection="3d")
            sphere_scatter(xs[i], ax=ax, title=f"t = {ts[i]:g}", **{"color": "C0", **kwargs})
        else:
            ax = fig.add_subplot(1, len(idx), k + 1)
            _draw_circle(ax)
            theta = np.arctan2(xs[i, :, 1], xs[i, :, 0])
            # Clusters are exact point masses: spread the radius a little to show multiplicity.
            r = 1 + 0.12 * (np.arange(len(theta)) % 7) / 7
            kw = {"s": 10, "c": theta, "cmap": "twilight", **kwargs}
            ax.scatter(r * np.cos(theta), r * np.sin(theta), **kw)
            ax.set_title(f"t = {ts[i]:g}")
    if title:
        fig.suptitle(title)
    return fig


def energy_curve(
    ts, energies, ax=None, title: str = "Energy along the flow", ylabel="F_s", **kwargs
):
    """Energy versus time: the staircase of metastable plateaus."""
    fig, ax = _axes(ax)
    ax.plot(np.asarray(ts), np.asarray(energies), **{"lw": 1.5, **kwargs})
    ax.set_xlabel("time t")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def cosine_histogram(
    X, ax=None, bins: int = 50, title: str = "Pairwise cosine similarities", label=None, **kwargs
):
    """Histogram of <x_i, x_j> over pairs i < j (overlay several with `ax=` and `label=`)."""
    X = np.asarray(X)
    G = X @ X.T
    vals = G[np.triu_indices(len(X), k=1)]
    fig, ax = _axes(ax)
    ax.hist(
        vals,
        **{"bins": bins, "range": (-1, 1), "density": True, "alpha": 0.6, **kwargs},
        label=label,
    )
    ax.set_xlabel("cosine similarity <x_i, x_j>")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    if label is not None:
        ax.legend()
    return fig


def sweep_curve(
    betas, values, ax=None, ylabel="", title="", band=None, logx=True, label=None, **kwargs
):
    """A quantity versus beta, with an optional (low, high) band (e.g. over seeds)."""
    fig, ax = _axes(ax)
    betas = np.asarray(betas)
    ax.plot(betas, np.asarray(values), **{"marker": "o", "label": label, **kwargs})
    if band is not None:
        ax.fill_between(betas, np.asarray(band[0]), np.asarray(band[1]), alpha=0.25)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("inverse temperature beta")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def _edges(values, log: bool):
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 1:
        return np.array([v[0] / 1.5, v[0] * 1.5]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    w = np.log(v) if log else v
    mid = (w[1:] + w[:-1]) / 2
    e = np.concatenate([[2 * w[0] - mid[0]], mid, [2 * w[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _geometric(values) -> bool:
    """True when `values` are positive and evenly spaced in log (a geomspace grid)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3 or not np.all(v > 0) or v.max() / v.min() < 4:
        return False
    step = np.diff(np.log(v))
    return bool(np.allclose(step, step.mean(), rtol=1e-3, atol=0))


def _plain_ticks(axis, values) -> None:
    """Plain numbers ("2", "0.5", not "2 x 10^0") on a log axis; the values themselves as
    ticks when there are few of them."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    if len(values) <= 10:
        axis.set_major_locator(FixedLocator(np.asarray(values, dtype=np.float64)))
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(NullFormatter())


def phase_diagram(
    ts,
    betas,
    values,
    ax=None,
    *,
    label: str = "value",
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    beta_axis: str = "auto",
    title: str = "",
    **kwargs,
):
    """Any quantity over (t, beta) as a colour map: cluster counts, the largest mass, ...

    **Arguments:**

    - `ts`: (T,) times; `betas`: (B,) inverse temperatures.
    - `values`: (B, T), or (B, seeds, T) averaged over seeds (NaN entries are ignored).
    - `label`: the colour-bar label; `log`: a logarithmic colour scale (values must be > 0).
    - `vmin`, `vmax`: the colour range (default: the finite data range). Values outside it
      are drawn in the end colours, with a warning naming how many.
    - `beta_axis`: "linear", "log" or "auto" (log for a geometric grid of betas).
    - `title`; extra keywords go to `ax.pcolormesh` (e.g. `cmap=`).

    **Returns:** the Figure (the diagram and its colour bar).
    """
    from matplotlib.colors import LogNorm, Normalize

    ts = np.asarray(ts, dtype=np.float64)
    betas = np.asarray(betas, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            values = np.nanmean(values, axis=1)
    if values.ndim != 2 or values.shape != (len(betas), len(ts)):
        raise ValueError(
            f"`values` must have shape (len(betas), len(ts)) = ({len(betas)}, {len(ts)}) "
            f"or (len(betas), seeds, len(ts)); got {np.shape(values)}."
        )
    if beta_axis not in ("auto", "linear", "log"):
        raise ValueError(f"`beta_axis` must be 'linear', 'log' or 'auto'; got {beta_axis!r}.")
    logy = _geometric(betas) if beta_axis == "auto" else beta_axis == "log"
    if logy and not np.all(betas > 0):
        raise ValueError("`beta_axis`='log' needs positive betas.")
    finite = values[np.isfinite(values)]
    if log:
        if np.any(finite <= 0):
            warnings.warn(
                f"phase_diagram: {int(np.sum(finite <= 0))} of {finite.size} values are <= 0 "
                "and have no place on a log colour scale; they are left blank (log=False "
                "draws them).",
                stacklevel=2,
            )
        finite = finite[finite > 0]
    if finite.size == 0:
        raise ValueError("`values` has no finite entry to draw" + (" above 0." if log else "."))
    lo = float(finite.min()) if vmin is None else float(vmin)
    hi = float(finite.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise ValueError(f"`vmin`={lo:g} must not exceed `vmax`={hi:g}.")
    slack = 1e-6 * max(abs(lo), abs(hi), hi - lo)  # float32 sums of masses reach 1 + 1e-7
    outside = int(np.sum((finite < lo - slack) | (finite > hi + slack)))
    if outside:
        warnings.warn(
            f"phase_diagram: {outside} of {finite.size} values lie outside the colour range "
            f"[{lo:g}, {hi:g}] (data range [{finite.min():g}, {finite.max():g}]) and are "
            "drawn in the end colours; widen vmin / vmax.",
            stacklevel=2,
        )
    if hi == lo:  # a constant map: give the colour bar a width so it is not degenerate
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    norm = LogNorm(vmin=lo, vmax=hi) if log else Normalize(vmin=lo, vmax=hi)
    shown = np.where(values > 0, values, np.nan) if log else values
    fig, ax = _axes(ax, (7, 4))
    mesh = ax.pcolormesh(
        _edges(ts, False),
        _edges(betas, logy),
        np.ma.masked_invalid(shown),
        **{"cmap": "viridis", "shading": "flat", "norm": norm, **kwargs},
    )
    bar = fig.colorbar(mesh, ax=ax, label=label)
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    if logy:
        ax.set_yscale("log")
        _plain_ticks(ax.yaxis, betas)
    ax.set_xlabel("time t")
    ax.set_ylabel("inverse temperature beta")
    ax.set_title(title or f"{label} over (t, beta)", fontsize=10)
    return fig


def largest_mass(
    betas,
    masses,
    ax=None,
    *,
    bound=None,
    limit: float | None | str = "auto",
    title: str = "Largest cluster mass versus beta",
    **kwargs,
):
    """Largest-cluster mass versus beta: masses (B,) or (B, seeds) (every seed a dot, the
    mean a line); `bound` a sequence (B,) or a callable of beta (the d = 2 mass bound,
    drawn clipped at 1) and `limit` a horizontal line ("auto": MASS_BOUND_LIMIT; None: no
    line)."""

    limit = MASS_BOUND_LIMIT if limit == "auto" else limit
    betas = np.asarray(betas, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    fig, ax = _axes(ax)
    if masses.ndim == 2:
        for s in range(masses.shape[1]):
            ax.scatter(betas, masses[:, s], s=12, color="C0", alpha=0.5)
        kw = {"color": "C0", "marker": "o", "label": "measured (mean over seeds)", **kwargs}
        ax.plot(betas, masses.mean(axis=1), **kw)
    else:
        ax.plot(betas, masses, **{"color": "C0", "marker": "o", "label": "measured", **kwargs})
    if bound is not None:
        values = [bound(b) for b in betas] if callable(bound) else bound
        values = np.minimum(np.asarray(values, dtype=np.float64), 1.0)
        ax.plot(betas, values, "k:", lw=1.5, label="mass bound (d = 2, stable, clipped at 1)")
    if limit is not None:
        ax.axhline(limit, color="C3", lw=1, ls="--", label=f"limit 16/(16+3e^(11/8)) = {limit:.4f}")
    if len(betas) > 1 and np.all(betas > 0):
        ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("inverse temperature beta")
    ax.set_ylabel("mass of the largest cluster")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def entropy_curves(
    betas,
    entropy,
    ns,
    ax=None,
    *,
    predicted=None,
    measured=None,
    normalised: bool = False,
    title: str = "Softmax entropy versus beta",
    **kwargs,
):
    """H(beta) / log n versus beta (log axis), one line per n.

    **Arguments:**

    - `betas`: (P,) inverse temperatures; `ns`: (N,) numbers of keys.
    - `entropy`: (N, P) softmax entropies H(beta) in nats (e.g. the row mean of
      `mf.entropy_curve`); divided by log n here (`normalised=True`: already divided).
    - `predicted` (N,): the law beta*_n, dashed verticals; `measured` (N,): the (median)
      measured beta*_n, a dot on each curve.
    - `title`; extra keywords go to `ax.plot` of the curves.

    **Returns:** the Figure. Raises ValueError when H / log n leaves [0, 1] (an entropy
    over n keys is at most log n: the wrong `ns`, or `normalised` mismatched).
    """
    betas = np.asarray(betas, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    ns = [int(n) for n in np.asarray(ns).reshape(-1)]
    if entropy.shape != (len(ns), len(betas)):
        raise ValueError(
            f"`entropy` must have shape (len(ns), len(betas)) = ({len(ns)}, {len(betas)}); "
            f"got {entropy.shape}."
        )
    if not normalised:
        if min(ns) < 2:
            raise ValueError(f"`ns` must be >= 2 to normalise by log n; got {min(ns)}.")
        entropy = entropy / np.log(np.asarray(ns, dtype=np.float64))[:, None]
    top = float(np.nanmax(entropy))
    if top > 1 + 1e-3 or float(np.nanmin(entropy)) < -1e-3:
        hint = " (pass normalised=False)" if normalised else " (already divided? normalised=True)"
        raise ValueError(
            f"`entropy` / log n must lie in [0, 1]; got values up to {top:.3g}: entropies in "
            f"nats over n keys are at most log n. Check `ns`{hint}."
        )
    fig, ax = _axes(ax)
    for j, n in enumerate(ns):
        (line,) = ax.plot(betas, entropy[j], **{"lw": 1.5, "label": f"n = {n}", **kwargs})
        c = line.get_color()
        if predicted is not None:
            ax.axvline(float(predicted[j]), color=c, ls="--", lw=0.8)
        if measured is not None:
            b = float(measured[j])
            ax.plot([b], [np.interp(np.log(b), np.log(betas), entropy[j])], "o", color=c, ms=5)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("inverse temperature beta")
    ax.set_ylabel("H(beta) / log n")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    keys = [k for k, v in (("dashed: law", predicted), ("dot: beta*_n", measured)) if v is not None]
    ax.legend(fontsize=7, title=", ".join(keys) or None, title_fontsize=7)
    return fig


def entropy_panels(
    betas, entropy, ns, labels, *, predicted=None, measured=None, normalised=False, cols=3, **kwargs
):
    """One `entropy_curves` panel per family: betas (F, P), entropy (F, N, P) in nats (or
    divided by log n with `normalised=True`), labels (F,), predicted / measured (F, N);
    extra keywords go to each panel's curves."""
    plt = _plt()
    F = len(labels)
    cols = min(cols, F)
    rows = -(-F // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for f, ax in enumerate(axes.ravel()):
        if f >= F:
            ax.axis("off")
            continue
        entropy_curves(
            betas[f],
            entropy[f],
            ns,
            ax=ax,
            predicted=None if predicted is None else predicted[f],
            measured=None if measured is None else measured[f],
            normalised=normalised,
            title=str(labels[f]),
            **kwargs,
        )
    fig.suptitle("Entropy of softmax rows: the spread-to-one-hot transition at beta*_n")
    return fig


def critical_ratios(
    ns, ratios: dict, ax=None, title: str = "Measured / predicted beta*_n", **kwargs
):
    """Median beta*_n / law versus n (log axis), one line per family: ratios {label: (N,)}."""
    fig, ax = _axes(ax)
    for label, r in ratios.items():
        ax.plot(np.asarray(ns), np.asarray(r), **{"marker": "o", "label": label, **kwargs})
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("number of keys n")
    ax.set_ylabel("median beta*_n / predicted law")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def atoms(X, locations, masses, ax=None, title: str = "Particles and atoms", **kwargs):
    """Particles (small grey) and atoms (red, marker area proportional to mass); d = 2 or 3."""
    X, L, m = np.asarray(X), np.asarray(locations), np.asarray(masses, dtype=np.float64)
    d = X.shape[-1]
    if d not in (2, 3):
        raise ValueError(f"atoms needs d = 2 or 3 points; got d = {d}.")
    size = 20 + 600 * m / max(float(m.max()), 1e-12)
    if d == 3:
        fig, ax = _axes(ax, (5, 5), projection="3d")
        _draw_sphere(ax)
        ax.scatter(X[:, 0], X[:, 1], X[:, 2], s=4, color="0.5", depthshade=False)
        kw = {"color": "C3", "alpha": 0.7, "depthshade": False, **kwargs}
        ax.scatter(L[:, 0], L[:, 1], L[:, 2], s=size, **kw)
    else:
        fig, ax = _axes(ax, (5, 5))
        _draw_circle(ax)
        ax.scatter(X[:, 0], X[:, 1], s=6, color="0.5", label="particles")
        kw = {"color": "C3", "alpha": 0.6, **kwargs}
        ax.scatter(L[:, 0], L[:, 1], s=size, label="atoms (area ~ mass)", **kw)
        for x, mass in zip(L, m, strict=True):
            ax.annotate(f"{mass:.2f}", 1.13 * x, ha="center", va="center", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 1.0), framealpha=0.8)
        ax.set_xlim(-1.4, 1.4)
        ax.set_ylim(-1.4, 1.4)
    ax.set_title(title, fontsize=10)
    return fig


def animate(trajectory, path, *, fps: int = 10, max_frames: int = 40, title: str = "", **kwargs):
    """Write an animation of a d = 2 or 3 trajectory: .gif with Pillow, .mp4 with ffmpeg.

    At most `max_frames` evenly spaced saved states. Returns the path; raises RuntimeError
    with an install hint when the writer is not available.
    """
    plt = _plt()
    from matplotlib import animation

    path = Path(path)
    ts, xs = _traj_arrays(trajectory)
    d = xs.shape[-1]
    if d not in (2, 3):
        raise ValueError(f"animate needs d = 2 or 3 points; got d = {d}.")
    if path.suffix == ".mp4":
        if not animation.FFMpegWriter.isAvailable():
            raise RuntimeError("mp4 needs ffmpeg on PATH; write a .gif instead (uses Pillow).")
        writer = animation.FFMpegWriter(fps=fps)
    else:
        try:
            import PIL  # noqa: F401
        except ImportError:
            raise RuntimeError("GIF animations need Pillow: pip install pillow") from None
        writer = animation.PillowWriter(fps=fps)
    frames = np.unique(np.linspace(0, len(ts) - 1, min(max_frames, len(ts))).round().astype(int))
    if d == 3:
        fig, ax = _axes(None, (4, 4), projection="3d")
        _draw_sphere(ax)
        sc = ax.scatter(*xs[0].T, **{"s": 8, "color": "C0", "depthshade": False, **kwargs})
    else:
        fig, ax = _axes(None, (4, 4))
        _draw_circle(ax)
        (sc,) = ax.plot(*xs[0].T, "o", **{"ms": 4, "color": "C0", **kwargs})

    def draw(i):
        if d == 3:
            sc._offsets3d = tuple(xs[i].T)
        else:
            sc.set_data(*xs[i].T)
        ax.set_title(f"{title}\nt = {ts[i]:g}" if title else f"t = {ts[i]:g}", fontsize=8)
        return (sc,)

    anim = animation.FuncAnimation(fig, draw, frames=frames, blit=False)
    anim.save(str(path), writer=writer, dpi=72)
    plt.close(fig)
    return str(path)


def save(fig, path, dpi: int = 110, **kwargs) -> str:
    """Save and close a figure (extra keywords go to `fig.savefig`); returns the path."""
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **kwargs)
    plt.close(fig)
    return str(path)
