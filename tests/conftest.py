import copy

import pytest
import torch

import mixedae  # noqa: F401  (registers the modules)
from mmpretrain.registry import MODELS

TINY_ARCH = dict(
    embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)


def tiny_cfg(img_size=32, patch_size=8, in_channels=3, **backbone):
    """A 2-layer, 64-dim MixedAE on 32 px images (N = 16 patches)."""
    num_patches = (img_size // patch_size)**2
    return dict(
        type='MixedAE',
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor',
            mean=[127.5] * in_channels,
            std=[127.5] * in_channels),
        backbone=dict(
            type='MixedAEViT',
            arch=TINY_ARCH,
            img_size=img_size,
            patch_size=patch_size,
            patch_cfg=dict(in_channels=in_channels),
            **backbone),
        neck=dict(
            type='MixedAEPretrainDecoder',
            num_patches=num_patches,
            patch_size=patch_size,
            in_chans=in_channels,
            embed_dim=64,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2),
        head=dict(
            type='MixedAEPretrainHead',
            norm_pix=True,
            patch_size=patch_size,
            in_channels=in_channels,
            loss=dict(type='PixelReconstructionLoss', criterion='L2'),
            homocon_loss=dict(type='HomologousContrastiveLoss')))


def build_tiny(**backbone):
    model = MODELS.build(tiny_cfg(**backbone))
    model.init_weights()
    return model


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_tiny()


@pytest.fixture
def tiny_cfg_factory():
    return lambda **kw: copy.deepcopy(tiny_cfg(**kw))


@pytest.fixture(autouse=True)
def mmpretrain_default_scope():
    """Every test starts in mmpretrain's registry scope, whatever scope an
    earlier test (an mmdet or mmseg config) left as the default."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield
