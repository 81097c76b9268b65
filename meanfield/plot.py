"""Matplotlib figures for meanfield runs. Every function returns the Figure it drew.

Figures (each takes `ax=` to draw into an existing axes where that makes sense):

    circle_trajectory(traj)        angle of every particle versus time (d = 2)
    sphere_scatter(X)              points on S^2 with the sphere drawn (d = 3)
    snapshots(traj, times)         the particles at chosen times (d = 2: circle, d = 3: S^2)
    energy_curve(ts, F)            energy versus time (the staircase of metastable plateaus)
    cosine_histogram(X)            histogram of <x_i, x_j> over pairs
    sweep_curve(betas, values)     a quantity versus beta (with a band over seeds)
    phase_diagram(ts, betas, c)    mean cluster count over (t, beta), with a colour bar
    largest_mass(betas, masses)    largest-cluster mass versus beta, the d = 2 mass bound and
                                   its limit 16 / (16 + 3 e^{11/8})
    entropy_curves(betas, H, ns)   H(beta) / log n versus beta for several n, with beta*_n
    entropy_panels(...)            one entropy_curves panel per score family
    critical_ratios(ns, ratios)    measured / predicted beta*_n versus n
    atoms(X, locations, masses)    particles and their atoms (marker area ~ mass)
    animate(traj, path)            a GIF (Pillow) or MP4 (ffmpeg) of a trajectory
    save(fig, path)                tight layout, write, close

matplotlib is imported lazily and the Agg backend is used when no display is set, so these
work on headless machines and in CI. Inputs may be JAX or NumPy arrays.
"""

from __future__ import annotations

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


def circle_trajectory(trajectory, ax=None, title: str = "Particles on the circle"):
    """Angle of every particle versus time (one line per particle); d = 2 only."""
    ts, xs = _traj_arrays(trajectory)
    if xs.shape[-1] != 2:
        raise ValueError(f"circle_trajectory needs d = 2 points; got d = {xs.shape[-1]}.")
    theta = np.arctan2(xs[..., 1], xs[..., 0])
    fig, ax = _axes(ax, (7, 4))
    # Plot the unwrapped angle so a particle crossing +-pi does not draw a vertical jump.
    ax.plot(ts, np.unwrap(theta, axis=0), lw=0.7, alpha=0.8)
    ax.set_xlabel("time t")
    ax.set_ylabel("angle theta_i(t) [rad, unwrapped]")
    ax.set_title(title, fontsize=10)
    return fig


def sphere_scatter(X, ax=None, title: str = "Particles on S^2", color=None, label=None):
    """3D scatter of points on S^2 with a wireframe sphere."""
    X = np.asarray(X)
    if X.shape[-1] != 3:
        raise ValueError(f"sphere_scatter needs d = 3 points; got d = {X.shape[-1]}.")
    fig, ax = _axes(ax, (5, 5), projection="3d")
    if not getattr(ax, "_meanfield_sphere", False):
        _draw_sphere(ax)
        ax._meanfield_sphere = True
    ax.scatter(X[:, 0], X[:, 1], X[:, 2], s=8, c=color, label=label, depthshade=False)
    ax.set_title(title, fontsize=10)
    return fig


def _times_to_indices(ts, times, panels: int):
    if times is None:
        return np.unique(np.linspace(0, len(ts) - 1, panels).round().astype(int))
    return np.array([int(np.argmin(np.abs(ts - t))) for t in times])


def snapshots(trajectory, times=None, *, panels: int = 4, title: str | None = None):
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
            sphere_scatter(xs[i], ax=ax, title=f"t = {ts[i]:g}", color="C0")
        else:
            ax = fig.add_subplot(1, len(idx), k + 1)
            _draw_circle(ax)
            theta = np.arctan2(xs[i, :, 1], xs[i, :, 0])
            # Clusters are exact point masses: spread the radius a little to show multiplicity.
            r = 1 + 0.12 * (np.arange(len(theta)) % 7) / 7
            ax.scatter(r * np.cos(theta), r * np.sin(theta), s=10, c=theta, cmap="twilight")
            ax.set_title(f"t = {ts[i]:g}")
    if title:
        fig.suptitle(title)
    return fig


def energy_curve(ts, energies, ax=None, title: str = "Energy along the flow", ylabel="F_s"):
    """Energy versus time: the staircase of metastable plateaus."""
    fig, ax = _axes(ax)
    ax.plot(np.asarray(ts), np.asarray(energies), lw=1.5)
    ax.set_xlabel("time t")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def cosine_histogram(
    X, ax=None, bins: int = 50, title: str = "Pairwise cosine similarities", label=None
):
    """Histogram of <x_i, x_j> over pairs i < j (overlay several with `ax=` and `label=`)."""
    X = np.asarray(X)
    G = X @ X.T
    vals = G[np.triu_indices(len(X), k=1)]
    fig, ax = _axes(ax)
    ax.hist(vals, bins=bins, range=(-1, 1), density=True, alpha=0.6, label=label)
    ax.set_xlabel("cosine similarity <x_i, x_j>")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    if label is not None:
        ax.legend()
    return fig


def sweep_curve(betas, values, ax=None, ylabel="", title="", band=None, logx=True, label=None):
    """A quantity versus beta, with an optional (low, high) band (e.g. over seeds)."""
    fig, ax = _axes(ax)
    betas = np.asarray(betas)
    ax.plot(betas, np.asarray(values), "o-", label=label)
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


def phase_diagram(ts, betas, counts, ax=None, title: str = "Number of clusters over (t, beta)"):
    """Mean cluster count over (t, beta): counts (B, T) or (B, seeds, T) (averaged over
    seeds); beta on a log axis, a colour bar for the count."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim == 3:
        counts = counts.mean(axis=1)
    fig, ax = _axes(ax, (7, 4))
    betas = np.asarray(betas, dtype=np.float64)
    log = bool(np.all(betas > 0)) and len(betas) > 1
    from matplotlib.colors import LogNorm

    norm = LogNorm(vmin=max(1.0, float(counts.min())), vmax=max(2.0, float(counts.max())))
    mesh = ax.pcolormesh(
        _edges(ts, False), _edges(betas, log), counts, cmap="viridis", shading="flat", norm=norm
    )
    fig.colorbar(mesh, ax=ax, label="mean number of clusters (log scale)")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time t")
    ax.set_ylabel("inverse temperature beta")
    ax.set_title(title, fontsize=10)
    return fig


def largest_mass(
    betas,
    masses,
    ax=None,
    *,
    bound=None,
    limit: float | None | str = "auto",
    title: str = "Largest cluster mass versus beta",
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
        ax.plot(betas, masses.mean(axis=1), "o-", color="C0", label="measured (mean over seeds)")
    else:
        ax.plot(betas, masses, "o-", color="C0", label="measured")
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
    title: str = "Softmax entropy versus beta",
):
    """H(beta) / log n versus beta (log axis), one line per n: entropy (N, P) on betas (P,).

    predicted (N,): the law beta*_n, dashed verticals; measured (N,): the median measured
    beta*_n, marked on each curve.
    """
    betas = np.asarray(betas, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    fig, ax = _axes(ax)
    for j, n in enumerate(ns):
        (line,) = ax.plot(betas, entropy[j], lw=1.5, label=f"n = {int(n)}")
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
    ax.legend(fontsize=7, title="dashed: law, dot: beta*_n", title_fontsize=7)
    return fig


def entropy_panels(betas, entropy, ns, labels, *, predicted=None, measured=None, cols=3):
    """One `entropy_curves` panel per family: betas (F, P), entropy (F, N, P), labels (F,),
    predicted / measured (F, N)."""
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
            title=str(labels[f]),
        )
    fig.suptitle("Entropy of softmax rows: the spread-to-one-hot transition at beta*_n")
    return fig


def critical_ratios(ns, ratios: dict, ax=None, title: str = "Measured / predicted beta*_n"):
    """Median beta*_n / law versus n (log axis), one line per family: ratios {label: (N,)}."""
    fig, ax = _axes(ax)
    for label, r in ratios.items():
        ax.plot(np.asarray(ns), np.asarray(r), "o-", label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("number of keys n")
    ax.set_ylabel("median beta*_n / predicted law")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def atoms(X, locations, masses, ax=None, title: str = "Particles and atoms"):
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
        ax.scatter(L[:, 0], L[:, 1], L[:, 2], s=size, color="C3", alpha=0.7, depthshade=False)
    else:
        fig, ax = _axes(ax, (5, 5))
        _draw_circle(ax)
        ax.scatter(X[:, 0], X[:, 1], s=6, color="0.5", label="particles")
        ax.scatter(L[:, 0], L[:, 1], s=size, color="C3", alpha=0.6, label="atoms (area ~ mass)")
        for x, mass in zip(L, m, strict=True):
            ax.annotate(f"{mass:.2f}", 1.13 * x, ha="center", va="center", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 1.0), framealpha=0.8)
        ax.set_xlim(-1.4, 1.4)
        ax.set_ylim(-1.4, 1.4)
    ax.set_title(title, fontsize=10)
    return fig


def animate(trajectory, path, *, fps: int = 10, max_frames: int = 40, title: str = ""):
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
        sc = ax.scatter(*xs[0].T, s=8, color="C0", depthshade=False)
    else:
        fig, ax = _axes(None, (4, 4))
        _draw_circle(ax)
        (sc,) = ax.plot(*xs[0].T, "o", ms=4, color="C0")

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


def save(fig, path, dpi: int = 110) -> str:
    """Save and close a figure; returns the path."""
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)
