"""Classification benchmark end to end on real Fashion-MNIST, on the CPU:
pre-train the tiny MixedAE for 2 iterations with mmengine's Runner (a real
runner checkpoint), convert it with the CLI converter, load it into an
mmpretrain ImageClassifier through `init_cfg=Pretrained` of the demo
fine-tuning config, fine-tune a few iterations and evaluate with mmpretrain's
`Accuracy` on a slice of the test split.

The run keeps both configs as they are except for sizes: the loaders
(a few hundred images, no workers) and, to stay within seconds on 2 shared
cores, the encoder width/depth (TINY_ARCH in both the pre-training and the
fine-tuning config; the demo's 192-dim 6-layer encoder costs ~0.35 GFLOP per
image). A separate test checks that the two configs agree on the real
architecture."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from conftest import SMALL_MODEL, TINY_ARCH
from mixedae.utils.checkpoint import (convert_to_vit,
                                      load_checkpoint_safely)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DATA = osp.join(ROOT, 'data/fashion_mnist')
PRETRAIN = osp.join(
    ROOT, 'configs/mixedae/'
    'mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py')
FINETUNE = osp.join(
    ROOT, 'configs/benchmarks/mmpretrain/'
    'vit-tiny-p4_mixedae-pre_1xb128-coslr-2e_fashion-mnist-32px.py')
CONVERTER = osp.join(ROOT, 'tools/model_converters/mixedae2vit.py')

# What the fine-tuning backbone differs in from the pre-trained encoder, by
# MAE's design: average pooling through a new norm (`ln2`, MAE's fc_norm)
# instead of the pre-trained final norm (`ln1`, dropped by final_norm=False).
NEW_IN_FINETUNE = {'ln2.weight', 'ln2.bias'}
DROPPED_IN_FINETUNE = {'ln1.weight', 'ln1.bias'}


class _SnapshotBackbone(Hook):
    """Copies the backbone weights at `before_train`, i.e. right after the
    Runner ran `init_weights` (which loads the pre-trained checkpoint)."""

    def __init__(self):
        self.state = None

    def before_train(self, runner):
        self.state = {
            k: v.detach().clone()
            for k, v in runner.model.backbone.state_dict().items()
        }


def _small_loader(loader, batch_size, num_images):
    loader.batch_size = batch_size
    loader.num_workers = 0
    loader.persistent_workers = False
    loader.dataset.data_root = DATA
    loader.dataset.indices = num_images


def _pretrain(work_dir):
    cfg = Config.fromfile(PRETRAIN)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = 'test_downstream_cls_pretrain'
    cfg.merge_from_dict(dict(model=copy.deepcopy(SMALL_MODEL)))
    _small_loader(cfg.train_dataloader, batch_size=8, num_images=16)
    cfg.train_cfg.max_epochs = 1  # 2 iterations (groups of 4 images)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.custom_hooks = []
    cfg.log_level = 'WARNING'
    Runner.from_cfg(cfg).train()
    return osp.join(str(work_dir), 'epoch_1.pth')


def _finetune_cfg(work_dir, backbone_ckpt):
    cfg = Config.fromfile(FINETUNE)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = 'test_downstream_cls_finetune'
    cfg.model.backbone.init_cfg.checkpoint = backbone_ckpt
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.head.in_channels = TINY_ARCH['embed_dims']
    _small_loader(cfg.train_dataloader, batch_size=32, num_images=256)
    # the train loop validates after its last epoch; runner.test() again
    _small_loader(cfg.val_dataloader, batch_size=100, num_images=100)
    _small_loader(cfg.test_dataloader, batch_size=100, num_images=200)
    cfg.train_cfg.max_epochs = 1  # 8 iterations
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.log_level = 'WARNING'
    return cfg


def test_finetune_config_takes_the_pretrained_encoder_as_it_is():
    """The demo pre-training config's encoder, converted, fills the demo
    fine-tuning config's backbone unchanged: a different width, depth,
    patch size or channel count is a size mismatch load_state_dict raises,
    a different image size a resized position embedding (mmpretrain's load
    hook). Only MAE's pooling norm is new and the final norm unused."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    pre = MODELS.build(Config.fromfile(PRETRAIN).model)
    backbone = MODELS.build(Config.fromfile(FINETUNE).model).backbone
    converted = convert_to_vit({'state_dict': pre.state_dict()})
    missing, unexpected = backbone.load_state_dict(converted, strict=False)
    assert set(missing) == NEW_IN_FINETUNE
    assert set(unexpected) == DROPPED_IN_FINETUNE
    loaded = backbone.state_dict()
    for key in set(converted) - DROPPED_IN_FINETUNE:
        assert torch.equal(loaded[key], converted[key]), key
    # the fine-tuning model runs on the pre-training images (1 x 32 x 32)
    backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.randn(2, 1, 32, 32))[0]
    assert feats.shape == (2, pre.backbone.embed_dims)


def test_forgotten_checkpoint_is_a_clear_error():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(FINETUNE).model)
    with pytest.raises(FileNotFoundError,
                       match='set model.backbone.init_cfg.checkpoint'):
        model.init_weights()


def test_finetune_config_evaluates_on_the_test_split():
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(FINETUNE).test_dataloader.dataset
    cfg.data_root = DATA
    cfg.pop('pipeline')
    assert len(DATASETS.build(cfg)) == 10000  # t10k, not the 60k train set


def test_pretrain_convert_finetune_evaluate_on_fashion_mnist(tmp_path):
    if not osp.exists(osp.join(DATA, 't10k-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')
    torch.manual_seed(0)

    # 1. a real runner checkpoint of the pre-training model
    pretrain_ckpt = _pretrain(tmp_path / 'pretrain')
    raw = load_checkpoint_safely(pretrain_ckpt)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer'} <= set(raw)

    # 2. the CLI converter, as a user runs it
    backbone_ckpt = str(tmp_path / 'backbone.pth')
    out = subprocess.run(
        [sys.executable, CONVERTER, pretrain_ckpt, backbone_ckpt],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    converted = torch.load(backbone_ckpt, map_location='cpu')['state_dict']
    assert 'segment_embed' not in converted
    assert not any(k.startswith(('backbone.', 'neck.', 'head.'))
                   for k in converted)

    # 3. fine-tune from it; the snapshot is taken right after init_weights
    runner = Runner.from_cfg(_finetune_cfg(tmp_path / 'finetune',
                                           backbone_ckpt))
    snapshot = _SnapshotBackbone()
    runner.register_hook(snapshot, priority='LOWEST')
    runner.train()

    loaded = snapshot.state
    assert loaded is not None, 'the before_train hook did not run'
    assert set(loaded) - set(converted) == NEW_IN_FINETUNE  # nothing missing
    assert set(converted) - set(loaded) == DROPPED_IN_FINETUNE
    for key in set(loaded) & set(converted):
        assert torch.equal(loaded[key], converted[key]), key
    # the pre-trained weights were loaded, then trained
    after = runner.model.backbone.state_dict()
    assert not torch.equal(after['layers.0.attn.qkv.weight'],
                           loaded['layers.0.attn.qkv.weight'])

    # 4. mmpretrain's Accuracy on 200 test-split images, above chance: a
    # constant prediction scores at most 13.5% there (the largest class,
    # 27 of the 200) and the loaded model before fine-tuning 10.5%; these
    # 8 iterations reach 18.5% (16.0-26.5% with randomness seeds 0-4,
    # 16-32% with twice the batch: a 2-layer 64-dim ViT from a 2-iteration
    # pre-training learns slowly, a plain PyTorch loop on the same model
    # gets 19.5%). With the training labels shuffled it scores 10.0%.
    metrics = runner.test()
    assert len(runner.test_dataloader.dataset) == 200
    assert metrics['accuracy/top1'] >= 15.0, metrics
