"""Pictures of mixing and reconstruction."""
from typing import List

import numpy as np
import torch


def to_uint8(imgs: torch.Tensor, mean: torch.Tensor,
             std: torch.Tensor) -> np.ndarray:
    """Undo the data preprocessor's normalisation: (n, C, H, W) float ->
    (n, H, W, C) uint8."""
    imgs = imgs.float().cpu() * std.cpu().view(1, -1, 1, 1) + mean.cpu().view(
        1, -1, 1, 1)
    return imgs.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def mixing_grids(sources: np.ndarray, mixed: np.ndarray, recon: np.ndarray,
                 group_size: int, num_views: int, zoom: int = 1,
                 pad: int = 2) -> List[np.ndarray]:
    """One picture per group, (1 + V) rows x (1 + G) columns: the first row
    holds the G sources (after an empty cell), each next row a mixed view
    followed by every source's reconstruction from that view.

    Args:
        sources (ndarray): (B, H, W, C) uint8.
        mixed (ndarray): (Q*V, H, W, C) uint8.
        recon (ndarray): (B*V, H, W, C) uint8, row ``b * V + v``.
        zoom (int): nearest-neighbour upscaling, for small images.
    """
    G, V = group_size, num_views
    B, H, W, C = sources.shape
    blank = np.full((H, W, C), 255, np.uint8)
    grids = []
    for q in range(B // G):
        rows = [[blank] + [sources[q * G + s] for s in range(G)]]
        for v in range(V):
            rows.append([mixed[q * V + v]] +
                        [recon[(q * G + s) * V + v] for s in range(G)])
        cells = [[np.pad(c, ((pad, pad), (pad, pad), (0, 0)),
                         constant_values=255) for c in row] for row in rows]
        grid = np.concatenate([np.concatenate(r, axis=1) for r in cells])
        grids.append(grid.repeat(zoom, axis=0).repeat(zoom, axis=1))
    return grids
