"""The figures of a run, drawn on ``matplotlib.figure.Figure`` objects.

No ``pyplot`` and no backend switch: a figure made this way renders to a file with the Agg
canvas whatever backend a notebook user has chosen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_points", "plot_trajectories", "save_grid", "tile"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _xy(x) -> np.ndarray:
    x = np.asarray(x).reshape(len(x), -1)
    return x[:, [0, 1 if x.shape[1] > 1 else 0]]


def plot_points(path: str | Path, x_gen, x_ref=None) -> None:
    """Scatter of generated points (first two coordinates), over the target when given."""
    fig = _figure(5, 5)
    ax = fig.subplots()
    if x_ref is not None:
        ref = _xy(x_ref)
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.6", label="target")
    gen = _xy(x_gen)
    ax.scatter(gen[:, 0], gen[:, 1], s=2, c="tab:blue", label="generated")
    if x_ref is not None:
        ax.legend(loc="upper right", markerscale=4)
    ax.set_aspect("equal")
    _save(fig, Path(path))


def plot_trajectories(path: str | Path, traj) -> None:
    """Trajectories ``(T, n, *event)`` (first two coordinates), black start to blue end."""
    traj = np.asarray(traj)
    traj = traj.reshape(traj.shape[0], traj.shape[1], -1)
    j = 1 if traj.shape[2] > 1 else 0
    fig = _figure(5, 5)
    ax = fig.subplots()
    ax.plot(traj[:, :, 0], traj[:, :, j], c="olive", alpha=0.15, lw=0.6)
    ax.scatter(traj[0, :, 0], traj[0, :, j], s=3, c="black", label="x0 (t=0)")
    ax.scatter(traj[-1, :, 0], traj[-1, :, j], s=3, c="tab:blue", label="x1 (t=1)")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_aspect("equal")
    _save(fig, Path(path))


def tile(images: np.ndarray, rows: int) -> np.ndarray:
    """Tile ``(rows * cols, H, W, C)`` images into one ``(rows (H+1)+1, cols (W+1)+1, C)`` picture."""
    n, h, w, c = images.shape
    cols = -(-n // rows)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), -1.0, np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
    return canvas


def save_grid(path: str | Path, panels: dict[str, np.ndarray], rows: int) -> None:
    """Image grids (values in [-1, 1]) side by side, one titled panel each, as a PNG."""
    fig = _figure(3.2 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, imgs) in zip(axes[0], panels.items(), strict=True):
        grid = np.clip((tile(np.asarray(imgs, np.float32), rows) + 1.0) / 2.0, 0.0, 1.0)
        if grid.shape[-1] == 1:
            ax.imshow(grid[..., 0], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(grid[..., :3], interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    _save(fig, Path(path))
