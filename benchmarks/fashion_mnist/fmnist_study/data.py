"""The evaluation images (the first n of each Fashion-MNIST split, as the
pre-training pipeline sees them) and the frozen encoder they are probed
with."""
import copy
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

# Fashion-MNIST train statistics (0-255), as in the pre-training configs.
MEAN, STD = 72.94, 90.02
NUM_CLASSES = 10
IMG_SIZE = 32

# Frozen features: the mean of the final-normed patch tokens, then
# mmpretrain's fresh ``ln2`` (a LayerNorm with identity affine at init).
ENCODER = dict(
    type='VisionTransformer',
    arch=dict(
        embed_dims=192, num_layers=6, num_heads=3, feedforward_channels=768),
    img_size=IMG_SIZE,
    patch_size=4,
    patch_cfg=dict(in_channels=1),
    out_type='avg_featmap',
    final_norm=True)
# keys a converted pre-training checkpoint cannot hold: the fresh norm after
# the patch average (LayerNorm with weight 1, bias 0 at init)
FRESH_KEYS = {'ln2.weight', 'ln2.bias'}


def load_split(data_root: str, test: bool, num: Optional[int]):
    """(images (n, 1, 32, 32) float normalised, labels (n,)) of a split,
    read with mmpretrain's ``FashionMNIST``; the first ``num`` images."""
    from mmpretrain.datasets import FashionMNIST
    ds = FashionMNIST(
        data_root=data_root, split='test' if test else 'train',
        test_mode=test, download=False, pipeline=[],
        indices=num, serialize_data=False)
    imgs = torch.from_numpy(
        np.stack([ds.get_data_info(i)['img'] for i in range(len(ds))]))
    labels = torch.tensor(
        [int(ds.get_data_info(i)['gt_label']) for i in range(len(ds))])
    x = imgs[:, None].float()  # (n, 1, 28, 28)
    # bicubic, a = -0.75 like cv2's, rounded to uint8 as the pipeline's crop
    x = F.interpolate(x, size=IMG_SIZE, mode='bicubic', align_corners=False)
    x = x.clamp(0, 255).round()
    return (x - MEAN) / STD, labels


def build_encoder(vit_state: dict) -> torch.nn.Module:
    """The frozen ``VisionTransformer`` with a converted checkpoint."""
    from mmpretrain.registry import MODELS
    encoder = MODELS.build(copy.deepcopy(ENCODER))
    missing, unexpected = encoder.load_state_dict(vit_state, strict=False)
    if set(missing) - FRESH_KEYS or unexpected:
        raise RuntimeError(
            'The converted checkpoint does not fit the evaluation encoder: '
            f'missing {sorted(set(missing) - FRESH_KEYS)}, unexpected '
            f'{sorted(unexpected)}.')
    encoder.eval()  # VisionTransformer.train() returns None
    return encoder


@torch.no_grad()
def extract(encoder: torch.nn.Module, x: torch.Tensor,
            batch_size: int = 512) -> torch.Tensor:
    """(n, D) frozen features."""
    return torch.cat(
        [encoder(b)[0] for b in x.split(batch_size)])  # avg_featmap
