"""Pictures of mixing, reconstruction and homologous-attention keys."""
from contextlib import contextmanager
from typing import List, Sequence

import cv2
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


# One colour per source slot (RGB, tab10 without its yellow and greys, so the
# yellow query outline stands out); cycled for G > 8.
SOURCE_COLORS = np.array(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
     [148, 103, 189], [140, 86, 75], [227, 119, 194], [23, 190, 207]],
    np.uint8)
QUERY_COLOR = np.array([255, 255, 0], np.uint8)


@contextmanager
def recording_keep_masks(backbone):
    """Within the block, the homologous-attention layers of ``backbone``
    (a :class:`MixedAEViT`) keep their top-k selections; the yielded dict is
    filled on exit with ``{layer index: (B, h, T, T) bool}`` (T = 1 + N,
    cls first), for the last mixed forward in the block."""
    attns = {i: backbone.layers[i].attn for i in backbone.homo_layers}
    keeps = {}
    for attn in attns.values():
        attn.record_keep, attn.keep_mask = True, None
    try:
        yield keeps
    finally:
        for i, attn in attns.items():
            if attn.keep_mask is not None:
                keeps[i] = attn.keep_mask
            attn.record_keep, attn.keep_mask = False, None


def pick_queries(slots: torch.Tensor, generator=None) -> torch.Tensor:
    """One random query patch per source: (G,) positions, entry ``s`` a
    patch filled by slot ``s`` of the (N,) slot map ``slots``."""
    G = int(slots.max()) + 1
    scores = torch.rand(slots.shape, generator=generator)
    own = slots[None].cpu() == torch.arange(G)[:, None]  # (G, N)
    return torch.where(own, scores, -1.).argmax(dim=1)


def _rgb(img: np.ndarray) -> np.ndarray:
    return img.repeat(3, axis=-1) if img.shape[-1] == 1 else img


def _per_pixel(values: np.ndarray, grid: tuple, patch_size: int):
    """(N, ...) per-patch values -> (H, W, ...) per-pixel, row-major."""
    h, w = grid
    values = values.reshape(h, w, *values.shape[1:])
    return values.repeat(patch_size, axis=0).repeat(patch_size, axis=1)


def attention_keys_grid(mixed: np.ndarray,
                        slots: np.ndarray,
                        weights: np.ndarray,
                        queries: np.ndarray,
                        patch_size: int,
                        zoom: int = 4,
                        pad: int = 2,
                        alpha: float = 0.6) -> np.ndarray:
    """Which keys the homologous attention keeps, for chosen query patches
    of one mixed image.

    One row per entry of ``weights`` (e.g. per layer, or per layer and
    head); the first column is the mixed image with every patch tinted by
    its true source (the answer key), then one column per query: the query
    patch outlined in yellow, each key patch tinted by its source's colour
    in proportion to its weight (1 = kept, e.g. by every head), keys with
    weight 0 dimmed. A good selection tints mostly the query's own colour.

    Args:
        mixed (ndarray): (H, W, C) uint8, C = 1 or 3 (RGB).
        slots (ndarray): (N,) source slot of each patch.
        weights (ndarray): (R, N, N) in [0, 1]: for row r, query i, key j,
            how strongly key j is kept (patch tokens only, cls excluded).
        queries (ndarray): (Qn,) query patch positions.
        patch_size (int): p, in pixels.

    Returns:
        ndarray: (R * cell, (1 + Qn) * cell, 3) uint8 RGB picture.
    """
    H, W = mixed.shape[:2]
    p = patch_size
    grid = (H // p, W // p)
    base = _rgb(mixed).astype(np.float32)  # (H, W, 3)
    colour = _per_pixel(SOURCE_COLORS[slots % len(SOURCE_COLORS)], grid,
                        p).astype(np.float32)  # (H, W, 3)
    # (R, 1 + Qn, N) weights: the answer key (all ones), then each query's
    answer = np.ones((weights.shape[0], 1, weights.shape[-1]), np.float32)
    wts = np.concatenate([answer, weights[:, queries]], axis=1)
    wt = _per_pixel(np.moveaxis(wts, -1, 0), grid, p)[..., None]  # H,W,R,Q,1
    wt = np.moveaxis(wt, (2, 3), (0, 1))  # (R, 1 + Qn, H, W, 1)
    cells = base * (0.35 + 0.65 * wt) * (1 - alpha * wt) + \
        colour * (alpha * wt)
    cells = cells.round().clip(0, 255).astype(np.uint8)
    cells = cells.repeat(zoom, axis=2).repeat(zoom, axis=3)
    # yellow outline of each query patch (columns 1..Qn), zoom // 2 wide
    t = max(1, zoom // 2)
    s = p * zoom
    for c, q in enumerate(queries, start=1):
        y, x = (q // grid[1]) * s, (q % grid[1]) * s
        box = cells[:, c, y:y + s, x:x + s]
        box[:, :t], box[:, -t:] = QUERY_COLOR, QUERY_COLOR
        box[:, :, :t], box[:, :, -t:] = QUERY_COLOR, QUERY_COLOR
    cells = np.pad(cells, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)),
                   constant_values=255)
    R, Qc, h, w, _ = cells.shape
    return cells.transpose(0, 2, 1, 3, 4).reshape(R * h, Qc * w, 3)


# Labels are drawn at a fixed size, independent of the zoom, so that they
# stay legible on small pictures and small on large ones.
LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_SCALE = 0.4
LABEL_PAD = 4  # px around labels and legend entries
LEGEND_LINE = 18  # px per line of the legend
SWATCH = 12  # px, side of a legend colour square


def _text_size(text: str) -> tuple:
    return cv2.getTextSize(text, LABEL_FONT, LABEL_SCALE, 1)[0]


def _put_text(img: np.ndarray, text: str, x: int, y_mid: int) -> None:
    """Black text starting at column ``x``, centred on row ``y_mid``."""
    cv2.putText(img, text, (x, y_mid + _text_size(text)[1] // 2),
                LABEL_FONT, LABEL_SCALE, (0, 0, 0), 1, cv2.LINE_AA)


def label_attention_grid(grid: np.ndarray, row_labels: Sequence[str],
                         num_sources: int) -> np.ndarray:
    """Add row labels and a colour legend to an :func:`attention_keys_grid`
    picture.

    A left margin names each row (e.g. ``'layer 3'``); a legend strip on
    top shows each source slot's colour (``'source s'``, s < num_sources)
    and the query outline (``'query'``), wrapped over as many lines as the
    width needs. Both have a fixed size in pixels, whatever the zoom.

    Args:
        grid (ndarray): (R * cell, W, 3) uint8 RGB picture of R rows.
        row_labels (Sequence[str]): R labels, top to bottom.
        num_sources (int): G, the number of source slots.

    Returns:
        ndarray: (legend + R * cell, margin + W, 3) uint8 RGB, with
        ``grid`` unchanged in its bottom-right corner.
    """
    gh, gw = grid.shape[:2]
    R = len(row_labels)
    if R == 0 or gh % R:
        raise ValueError(f'{R} row labels for a picture {gh} px high.')
    entries = [(f'source {s}', SOURCE_COLORS[s % len(SOURCE_COLORS)], True)
               for s in range(num_sources)] + [('query', QUERY_COLOR, False)]
    widths = [SWATCH + LABEL_PAD + _text_size(t)[0] + 2 * LABEL_PAD
              for t, _, _ in entries]
    margin = max(_text_size(t)[0] for t in row_labels) + 2 * LABEL_PAD
    # widen the margin when even one legend entry is wider than the picture
    margin = max(margin, LABEL_PAD + max(widths) - gw)
    width = margin + gw
    rows, x = [[]], LABEL_PAD
    for entry, w in zip(entries, widths):
        if x + w > width and rows[-1]:
            rows.append([])
            x = LABEL_PAD
        rows[-1].append((x, *entry))
        x += w
    legend = len(rows) * LEGEND_LINE + LABEL_PAD
    canvas = np.full((legend + gh, width, 3), 255, np.uint8)
    canvas[legend:, margin:] = grid
    for i, row in enumerate(rows):
        y = LABEL_PAD + i * LEGEND_LINE + (LEGEND_LINE - SWATCH) // 2
        for x, text, colour, filled in row:
            box = canvas[y:y + SWATCH, x:x + SWATCH]
            if filled:
                box[:] = colour
            else:  # the query outline, on grey: yellow on white is faint
                box[:] = 128
                box[:2], box[-2:], box[:, :2], box[:, -2:] = (colour, ) * 4
            _put_text(canvas, text, x + SWATCH + LABEL_PAD,
                      y + SWATCH // 2)
    cell = gh // R
    for r, text in enumerate(row_labels):
        _put_text(canvas, text, LABEL_PAD, legend + r * cell + cell // 2)
    return canvas
