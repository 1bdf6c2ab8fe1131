import copy
import importlib.util
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config

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


# ------------------------------------------------ short real runs of the demo
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/mixedae/mixedae_vit-tiny-p4_1xb128-coslr-'
                '3e_fashion-mnist-32px.py')
# the demo with the ground-truth prior (a homologous bias: a source cue)
GT_PRIOR = DEMO.replace('mixedae_vit-tiny', 'mixedae-gt-prior_vit-tiny')
# the demo plus HomoCon on the features (through a projector)
FEATURE_HOMOCON = DEMO.replace('mixedae_vit-tiny',
                               'mixedae-feature-homocon_vit-tiny')
DATA = osp.join(ROOT, 'data/fashion_mnist')
# the demo model at 64 wide and 2 layers: the overrides of `model` (the
# default has no HomoCon; SMALL_PROJECTOR for the configs that have one)
SMALL_MODEL = dict(
    backbone=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                            feedforward_channels=128)),
    neck=dict(embed_dim=64, decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2))
SMALL_PROJECTOR = dict(head=dict(homocon_loss=dict(projector=dict(
    in_channels=64, hid_channels=64, out_channels=32))))


def require_fashion_mnist():
    """Tests on real data fail (never skip) without it."""
    if not osp.exists(osp.join(DATA, 't10k-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')


def demo_cfg(work_dir, num_images=256, batch_size=32, small=False,
             config=DEMO):
    """The demo config shrunk for a test: ``num_images`` Fashion-MNIST
    training images in batches of ``batch_size``, one epoch at a constant
    lr, no workers, logged every 2 iterations; with ``small`` the 64-wide,
    2-layer model (:data:`SMALL_MODEL`, and :data:`SMALL_PROJECTOR` where
    the config has HomoCon on a projector)."""
    require_fashion_mnist()
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    # mmengine's logger and visualizer are per-name singletons named by the
    # timestamp by default: two runs started in the same second in one
    # process would share them (and write one's scalars into the other's
    # work dir)
    cfg.experiment_name = f'test_{uuid.uuid4().hex}'
    loader = cfg.train_dataloader
    loader.dataset.data_root = DATA
    loader.dataset.indices = num_images
    loader.batch_size = batch_size
    loader.num_workers = 0
    loader.persistent_workers = False
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 2
    if small:
        cfg.merge_from_dict(dict(model=copy.deepcopy(SMALL_MODEL)))
        if (cfg.model.head.homocon_loss or {}).get('projector'):
            cfg.merge_from_dict(dict(model=copy.deepcopy(SMALL_PROJECTOR)))
    return cfg


def load_script(rel_path: str):
    """A script of the repository (not a package module) as a module."""
    name = osp.splitext(osp.basename(rel_path))[0]
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(ROOT, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shrink_mask_rcnn(model):
    """The COCO Mask R-CNN config's neck and heads narrowed for a 64-wide
    backbone (outputs of one layer) and 10 classes."""
    model.neck[0].in_channels = 64
    model.neck[1].update(in_channels=[16, 32, 64, 64], out_channels=32)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    model.roi_head.mask_roi_extractor.out_channels = 32
    model.roi_head.bbox_head.update(
        in_channels=32, fc_out_channels=64, num_classes=10)
    model.roi_head.mask_head.update(
        in_channels=32, conv_out_channels=32, num_classes=10)
