"""Paper Figure 3: t-SNE of real and generated embeddings, one panel per start step n.

Each modality's generated rows are completed from all the other modalities (the leave-one-out
condition MMER uses), on up to 600 samples of the split that have every modality, as in the paper
("600 real samples and their generated counterparts from each modality").  Real rows are dots,
generated rows crosses, one colour per modality; all the rows of a panel share one t-SNE map.
matplotlib draws without a display (its Agg canvas, no pyplot state).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from admc.outdir import atomic_write_bytes
from admc.data import Split
from admc.pipeline import ADMCModel

SAMPLES = 600


@torch.no_grad()
def real_and_generated(model: ADMCModel, split: Split, seed: int,
                       samples: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Real rows ``[M, n, E]`` and leave-one-out generated rows ``[M, n, E]`` of up to ``samples``
    samples with every modality (standardized embedding space; the completer as it is set)."""
    z, present = model.embed(split)
    full = torch.nonzero(present.all(dim=1)).flatten().cpu().numpy()
    rng = np.random.default_rng(seed)
    pick = torch.from_numpy(np.sort(rng.permutation(full)[:samples])).to(z.device)
    zf = z[pick]
    gen = torch.Generator().manual_seed(seed + 5)
    generated = []
    for i in range(model.M):
        avail = torch.ones(len(zf), model.M, dtype=torch.bool, device=z.device)
        avail[:, i] = False
        generated.append(model.fill(zf, avail, gen)[:, i])
    return zf.transpose(0, 1).cpu().numpy(), torch.stack(generated).cpu().numpy()


def tsne_map(real: np.ndarray, generated: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE coordinates ``[2, M, n, 2]`` (real, generated) from one map of every row."""
    from sklearn.manifold import TSNE

    rows = np.concatenate([real, generated]).reshape(-1, real.shape[-1])
    perplexity = float(min(30.0, max(2.0, (len(rows) - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(rows)
    return xy.reshape(2, *real.shape[:2], 2)


def figure3(model: ADMCModel, split: Split, seed: int, steps: list[int | None], path: Path, title: str) -> Path:
    """Write the figure as PNG at ``path`` (atomically); ``steps``: the n of each panel (``None``:
    the model's own, for a completer without n)."""
    from matplotlib.figure import Figure

    names = model.schema.names
    colours = [f"C{i}" for i in range(len(names))]
    fig = Figure(figsize=(4.2 * len(steps), 4.4), layout="constrained")
    axes = fig.subplots(1, len(steps), squeeze=False)[0]
    for ax, n in zip(axes, steps):
        with model.using_start_step(n):
            real, generated = real_and_generated(model, split, seed)
        xy = tsne_map(real, generated, seed)
        for i, name in enumerate(names):
            ax.scatter(*xy[0, i].T, s=6, c=colours[i], marker="o", alpha=0.6, label=f"{name} real")
            ax.scatter(*xy[1, i].T, s=10, c=colours[i], marker="x", alpha=0.6, label=f"{name} generated")
        ax.set_title("as completed (no n)" if n is None else f"n = {n}")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(loc="best", fontsize=7, markerscale=1.5)
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
