"""ViTDet-style simple feature pyramid: strides 4/8/16/32 from one map."""
from typing import Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

# scale -> how a stride-16 map is brought to stride 16 / scale
_SUPPORTED_SCALES = (4.0, 2.0, 1.0, 0.5)


class SimpleFeaturePyramid(BaseModule):
    """Turn the single stride-16 map of a plain ViT into a pyramid.

    The rescaling half of ViTDet's simple feature pyramid (Li et al., 2022,
    "Exploring Plain Vision Transformer Backbones for Object Detection"):
    ``4``: two stride-2 deconvolutions (norm + GELU between them),
    ``2``: one deconvolution, ``1``: identity, ``0.5``: 2x2 max-pooling.
    Each deconvolution halves the channels, so ``scales=(4, 2, 1, 0.5)`` on a
    C-channel map gives channels ``(C/4, C/2, C, C)`` at strides
    ``(4, 8, 16, 32)`` -- put a standard ``FPN`` after it (lateral and output
    convolutions, extra levels) as in the MAE/BEiT detection benchmarks.

    Args:
        in_channels (int): channels C of the ViT feature map.
        scales (Sequence[float]): output scales relative to the input map,
            each one of 4, 2, 1, 0.5, in any order. Defaults to (4, 2, 1, 0.5).
        in_index (int): which backbone output to use when it returns several.
            Defaults to -1 (the last, i.e. the final layer).
        norm_cfg (dict): norm between the two deconvolutions of scale 4.
            Defaults to channels-first LayerNorm (mmpretrain's ``LN2d``), as
            in ViTDet.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 scales: Sequence[float] = (4, 2, 1, 0.5),
                 in_index: int = -1,
                 norm_cfg: dict = dict(type='mmpretrain.LN2d', eps=1e-6),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not (isinstance(in_channels, int) and in_channels > 0
                and in_channels % 4 == 0):
            raise ValueError('`in_channels` must be a positive multiple of 4 '
                             f'(two deconvs halve it), got {in_channels!r}.')
        bad = [s for s in scales if float(s) not in _SUPPORTED_SCALES]
        if bad or not scales:
            raise ValueError(f'`scales` must be a non-empty subset of '
                             f'{_SUPPORTED_SCALES}, got {tuple(scales)!r}.')
        self.in_channels = in_channels
        self.scales = tuple(float(s) for s in scales)
        self.in_index = in_index
        C = in_channels
        self.stages = nn.ModuleList()
        self.out_channels = []
        for scale in self.scales:
            if scale == 4.0:
                stage = nn.Sequential(
                    nn.ConvTranspose2d(C, C // 2, 2, stride=2),
                    build_norm_layer(norm_cfg, C // 2)[1], nn.GELU(),
                    nn.ConvTranspose2d(C // 2, C // 4, 2, stride=2))
                out = C // 4
            elif scale == 2.0:
                stage, out = nn.ConvTranspose2d(C, C // 2, 2, stride=2), C // 2
            elif scale == 1.0:
                stage, out = nn.Identity(), C
            else:
                stage, out = nn.MaxPool2d(2, stride=2), C
            self.stages.append(stage)
            self.out_channels.append(out)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """(B, C, H, W) map (or a sequence of them) -> one map per scale."""
        x = inputs[self.in_index] if isinstance(inputs,
                                                (list, tuple)) else inputs
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'expected a (B, {self.in_channels}, H, W) feature map (the '
                'backbone needs out_type="featmap"), got shape '
                f'{tuple(x.shape)}.')
        return tuple(stage(x) for stage in self.stages)
