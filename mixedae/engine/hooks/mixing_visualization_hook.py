"""Write pictures of mixed images and their reconstructions."""
import os.path as osp
from typing import Optional

import mmcv
import torch
from mmengine.dataset import default_collate
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from ...utils.visualization import mixing_grids, to_uint8


@HOOKS.register_module()
class MixingVisualizationHook(Hook):
    """After every ``interval`` epochs and at the end of training, mix the
    first ``num_images`` training samples and save, per group, the sources,
    each mixed view and every reconstruction to
    ``{work_dir}/vis/epoch_{n}/group_{q}.png``.

    Args:
        num_images (int): images to show; a multiple of the group size G.
            Defaults to 8.
        interval (int, optional): epochs between pictures; None for the end
            of training only. Defaults to None.
        zoom (int): nearest-neighbour upscaling of each cell. Defaults to 1.
    """

    priority = 'LOW'

    def __init__(self,
                 num_images: int = 8,
                 interval: Optional[int] = None,
                 zoom: int = 1) -> None:
        self.num_images = num_images
        self.interval = interval
        self.zoom = zoom

    def after_train_epoch(self, runner) -> None:
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
        with torch.no_grad():
            inputs = model.data_preprocessor(data)['inputs']
            out = model.reconstruct(inputs)
        model.train(was_training)
        write_mixing_pictures(inputs, out, model, out_dir, self.zoom)
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
