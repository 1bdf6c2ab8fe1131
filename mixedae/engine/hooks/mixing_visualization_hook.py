"""Write pictures of mixed images, their reconstructions and the keys the
homologous attention keeps."""
import os.path as osp
from contextlib import nullcontext
from typing import Dict, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from ...utils.visualization import (attention_keys_grid,
                                    label_attention_grid, mixing_grids,
                                    pick_queries, recording_keep_masks,
                                    to_uint8)


@HOOKS.register_module()
class MixingVisualizationHook(Hook):
    """After every ``interval`` epochs and at the end of training, mix the
    first ``num_images`` training samples and save, per group, the sources,
    each mixed view and every reconstruction to
    ``{work_dir}/vis/epoch_{n}/group_{q}.png``; with ``attention=True``
    also, per mixed view, which keys the homologous attention keeps for one
    query patch per source (``attention_group_{q}_view_{v}.png``, see
    :func:`write_attention_pictures`). Only rank 0 draws and writes: every
    rank would write the same files.

    Args:
        num_images (int): images to show; a multiple of the group size G.
            Defaults to 8.
        interval (int, optional): epochs between pictures; None for the end
            of training only. Defaults to None.
        zoom (int): nearest-neighbour upscaling of each cell. Defaults to 1.
        attention (bool): also write the attention pictures. Defaults to
            False.
    """

    priority = 'LOW'

    def __init__(self,
                 num_images: int = 8,
                 interval: Optional[int] = None,
                 zoom: int = 1,
                 attention: bool = False) -> None:
        self.num_images = num_images
        self.interval = interval
        self.zoom = zoom
        self.attention = attention

    def after_train_epoch(self, runner) -> None:
        # the model's forward here has no collective, so the other ranks
        # need not wait for rank 0
        if not is_main_process():
            return
        if self.is_last_train_epoch(runner) or (
                self.interval and self.every_n_epochs(runner, self.interval)):
            # runner.epoch counts finished epochs only after this hook
            self.visualize(runner, osp.join(runner.work_dir, 'vis',
                                            f'epoch_{runner.epoch + 1}'))

    def visualize(self, runner, out_dir: str) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        dataset = runner.train_dataloader.dataset
        G = model.backbone.group_size
        if self.num_images % G:
            raise ValueError(f'`num_images`={self.num_images} of '
                             f'MixingVisualizationHook must be a multiple '
                             f'of the group size G={G}.')
        data = default_collate([dataset[i] for i in range(self.num_images)])
        was_training = model.training
        model.eval()
        record = recording_keep_masks(
            model.backbone) if self.attention else nullcontext({})
        with torch.no_grad(), record as keeps:
            inputs = model.data_preprocessor(data)['inputs']
            out = model.reconstruct(inputs)
        model.train(was_training)
        write_mixing_pictures(inputs, out, model, out_dir, self.zoom)
        if self.attention:
            write_attention_pictures(out, keeps, model, out_dir,
                                     zoom=self.zoom)
        runner.logger.info(f'Mixing pictures written to {out_dir}')


def write_mixing_pictures(inputs, out, model, out_dir, zoom=1):
    """Save ``model.reconstruct(inputs)``'s result as one PNG per group."""
    pre = model.data_preprocessor
    mean, std = pre.mean, pre.std
    grids = mixing_grids(
        to_uint8(inputs, mean, std), to_uint8(out['mixed'], mean, std),
        to_uint8(out['recon'], mean, std), model.backbone.group_size,
        model.backbone.num_views, zoom)
    for q, grid in enumerate(grids):
        # mmcv writes BGR; our arrays are in the preprocessor's channel order
        img = grid[..., ::-1] if grid.shape[-1] == 3 else grid
        mmcv.imwrite(img, osp.join(out_dir, f'group_{q}.png'))


def write_attention_pictures(out: dict,
                             keeps: Dict[int, torch.Tensor],
                             model,
                             out_dir: str,
                             queries: Optional[Sequence[int]] = None,
                             layers: Optional[Sequence[int]] = None,
                             per_head: bool = False,
                             zoom: int = 4,
                             seed: int = 0,
                             prefix: str = 'attention_',
                             labels: bool = True) -> list:
    """Save, per mixed image, which keys each query keeps in each layer
    (:func:`attention_keys_grid`), as ``{prefix}group_{q}_view_{v}.png``,
    with the rows labelled and a legend of the source colours
    (:func:`label_attention_grid`).

    Args:
        out (dict): ``model.reconstruct`` output (``mixed``, ``masks``).
        keeps (dict): layer -> (Q*V, h, T, T) top-k selections of that
            forward (:func:`recording_keep_masks`).
        queries (Sequence[int], optional): query patch positions; defaults
            to one random patch per source of each mixed image.
        layers (Sequence[int], optional): rows, a subset of ``keeps``;
            defaults to all recorded layers.
        per_head (bool): one row per layer and head instead of one row per
            layer with the keys' weights averaged over heads (the share of
            heads keeping each key).
        labels (bool): row labels (``layer i`` or ``layer i head h``) and
            the colour legend. Defaults to True.

    Returns:
        list[str]: the files written.
    """
    pre = model.data_preprocessor
    mixed = to_uint8(out['mixed'], pre.mean, pre.std)  # (Q*V, H, W, C)
    slots = out['masks'].flatten(0, 1).cpu()  # (Q*V, N)
    layers = sorted(keeps) if layers is None else list(layers)
    missing = [i for i in layers if i not in keeps]
    if missing:
        raise ValueError(f'layers {missing} use no homologous attention; '
                         f'recorded: {sorted(keeps)}.')
    N = slots.shape[1]
    if queries is not None and not all(0 <= q < N for q in queries):
        raise ValueError(f'query patches must be in [0, {N}), got '
                         f'{list(queries)}.')
    # (L, Q*V, h, N, N): patch queries and keys only (cls dropped)
    keep = torch.stack([keeps[i][:, :, 1:, 1:] for i in layers]).float()
    if per_head:
        weights = keep.transpose(0, 1).flatten(1, 2)  # (Q*V, L*h, N, N)
        row_labels = [f'layer {i} head {h}' for i in layers
                      for h in range(keep.shape[2])]
    else:
        weights = keep.mean(dim=2).transpose(0, 1)  # (Q*V, L, N, N)
        row_labels = [f'layer {i}' for i in layers]
    generator = torch.Generator().manual_seed(seed)
    V = out['masks'].shape[1]
    files = []
    for m in range(len(mixed)):
        qs = pick_queries(slots[m], generator) if queries is None else \
            torch.as_tensor(queries)
        grid = attention_keys_grid(mixed[m], slots[m].numpy(),
                                   weights[m].cpu().numpy(), qs.numpy(),
                                   model.backbone.patch_size, zoom)
        if labels:
            grid = label_attention_grid(grid, row_labels,
                                        model.backbone.group_size)
        path = osp.join(out_dir, f'{prefix}group_{m // V}_view_{m % V}.png')
        mmcv.imwrite(np.ascontiguousarray(grid[..., ::-1]), path)  # BGR
        files.append(path)
    return files
