"""``init_cfg=dict(type='Pretrained')`` on the downstream ViT backbones: the
real benchmark configs of every family (mmpretrain fine-tuning and linear
probe, mmseg UperNet, mmdet Mask R-CNN), shrunk to a 4-layer 64-dim encoder,
built with their libraries' registries and initialised by
``model.init_weights()`` as the Runner does.

A raw pre-training checkpoint gives the same weights as its conversion; a
checkpoint without some encoder tensors, or of another shape, stops with an
error naming the keys and ``model.backbone.init_cfg``.
"""
import fnmatch
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope

from conftest import shrink_mask_rcnn, tiny_cfg
from mixedae.utils.checkpoint import (CheckpointError, convert_to_vit,
                                      vit_to_timm)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'configs/benchmarks')
CLS_FINETUNE = 'mmpretrain/vit-base-p16_mixedae-pre_8xb128-coslr-100e_in1k.py'
CLS_LINEAR = ('mmpretrain/'
              'vit-base-p16_mixedae-pre_8xb2048-linear-coslr-90e_in1k.py')
SEG = ('mmsegmentation/'
       'upernet_vit-base-p16_mixedae-pre_8xb2-amp-160k_ade20k-512x512.py')
DET = ('mmdetection/'
       'mask-rcnn_vit-base-p16_mixedae-pre_fpn_8xb2-amp-ms-1x_coco.py')
FAMILIES = (CLS_FINETUNE, CLS_LINEAR, SEG, DET)

# 4 layers: UperNet takes 4 outputs. Pre-trained at 32 px, patch 16 (a 2x2
# grid); the dense configs run at 64 px, so their pos_embed is resized.
ARCH = dict(
    embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)
PRE_IMG, PATCH, DENSE_IMG = 32, 16, 64
# in the model, never in a MAE-style encoder: the norm after average
# pooling; BEiT's layer scale and relative position bias (mmseg's MAE recipe)
FRESH = ('ln2.*', 'layers.*.gamma_?', 'layers.*.attn.relative_position_*')


def _fresh(keys):
    return {k for k in keys if any(fnmatch.fnmatch(k, p) for p in FRESH)}


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A runner-like pre-training checkpoint of a tiny MixedAE and its
    conversion, written as the CLI does."""
    from mmpretrain.registry import MODELS
    tmp = tmp_path_factory.mktemp('pretrained_init')
    cfg = tiny_cfg(img_size=PRE_IMG, patch_size=PATCH)
    cfg['backbone']['arch'] = ARCH
    torch.manual_seed(3)
    model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():  # as if trained: no tensor at its init value
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    hub = MessageHub.get_instance('test_pretrained_init')
    hub.update_scalar('train/loss', 1.0)
    raw = str(tmp / 'epoch_300.pth')
    torch.save(dict(meta=dict(epoch=300), state_dict=model.state_dict(),
                    message_hub=hub.state_dict()), raw)
    vit = convert_to_vit(dict(state_dict=model.state_dict()))
    converted = str(tmp / 'backbone.pth')
    torch.save(dict(state_dict=vit), converted)
    return dict(raw=raw, converted=converted, vit=vit, tmp=tmp)


def _build(family, checkpoint, **init_cfg):
    """The family's benchmark model, shrunk, with its backbone's
    ``init_cfg.checkpoint`` set; built in the config's registry scope."""
    cfg = Config.fromfile(osp.join(BENCH, family))  # runs custom_imports
    model = cfg.model
    model.backbone.update(arch=ARCH, patch_size=PATCH)
    model.backbone.init_cfg.update(checkpoint=checkpoint, **init_cfg)
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope == 'mmpretrain':
        model.backbone.img_size = PRE_IMG
        model.head.update(in_channels=64, num_classes=10)
        if family == CLS_LINEAR:
            model.backbone.frozen_stages = ARCH['num_layers']
            model.neck.input_features = 64
        from mmpretrain.registry import MODELS
    elif scope == 'mmseg':
        model.backbone.update(img_size=DENSE_IMG, out_indices=(0, 1, 2, 3))
        if model.neck.type == 'Feature2Pyramid':  # mmseg's MAE recipe
            model.neck.embed_dim = 64
            width = 64
        else:
            model.neck.update(in_channels=[64] * 4, out_channels=32)
            width = 32
        model.decode_head.update(
            in_channels=[width] * 4, channels=32, num_classes=11)
        model.auxiliary_head.update(in_channels=width, channels=16,
                                    num_classes=11)
        model.data_preprocessor.size = (DENSE_IMG, DENSE_IMG)
        from mmseg.registry import MODELS
    else:
        model.backbone.update(img_size=DENSE_IMG, out_indices=(3, ))
        shrink_mask_rcnn(model)
        from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        return MODELS.build(model)


def _init(model):
    scope = model.__module__.split('.')[0]
    with DefaultScope.overwrite_default_scope(scope):
        model.init_weights()
    return {k: v.detach().clone()
            for k, v in model.backbone.state_dict().items()}


def _expected(vit, family):
    """The converted encoder as the family's backbone should hold it."""
    if family in (SEG, DET):  # the 2x2 grid resized to 4x4
        vit = convert_to_vit(dict(state_dict=vit), img_size=DENSE_IMG)
    return vit


@pytest.mark.parametrize('family', FAMILIES)
def test_every_family_imports_the_initializer(family):
    """mmseg's / mmdet's train.py import only what custom_imports names."""
    cfg = Config.fromfile(osp.join(BENCH, family), import_custom_modules=False)
    assert 'mixedae' in cfg.custom_imports['imports']
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'


@pytest.mark.parametrize('family', FAMILIES)
def test_converted_checkpoint_loads_every_encoder_tensor(family, checkpoints):
    model = _build(family, checkpoints['converted'])
    random_init = {
        k: v.clone()
        for k, v in model.backbone.state_dict().items()
    }
    loaded = _init(model)
    expected = _expected(checkpoints['vit'], family)
    fresh = _fresh(loaded)
    assert set(loaded) - set(expected) == fresh
    for key in set(loaded) - fresh:
        assert torch.equal(loaded[key], expected[key]), key
        assert not torch.equal(loaded[key], random_init[key]), key
    if family == CLS_FINETUNE:  # avg pooling: ln2 fresh, ln1 not used
        assert fresh == {'ln2.weight', 'ln2.bias'}
        assert 'ln1.weight' not in loaded


@pytest.mark.parametrize('family', FAMILIES)
def test_raw_pretraining_checkpoint_is_converted_on_load(family, checkpoints):
    from_raw = _init(_build(family, checkpoints['raw']))
    from_converted = _init(_build(family, checkpoints['converted']))
    assert set(from_raw) == set(from_converted)
    for key, value in from_converted.items():
        assert torch.equal(from_raw[key], value), key


@pytest.mark.parametrize('family', FAMILIES)
def test_missing_encoder_tensors_name_the_keys(family, checkpoints):
    vit = dict(checkpoints['vit'])
    gone = ('layers.2.attn.qkv.weight', 'patch_embed.projection.bias')
    for key in gone:
        del vit[key]
    path = str(checkpoints['tmp'] / f'partial_{family.split("/")[0]}.pth')
    torch.save(dict(state_dict=vit), path)
    model = _build(family, path)
    with pytest.raises(CheckpointError) as info:
        _init(model)
    message = str(info.value)
    assert all(key in message for key in gone), message
    assert 'model.backbone.init_cfg' in message and path in message
    assert '\n' not in message
    # declared fresh in the config, they are allowed
    declared = Config.fromfile(
        osp.join(BENCH, family),
        import_custom_modules=False).model.backbone.init_cfg.get(
            'allow_missing', [])
    _init(_build(family, path, allow_missing=list(declared) + list(gone)))


@pytest.mark.parametrize('family', (CLS_FINETUNE, SEG))
def test_checkpoint_of_another_architecture_is_refused(family, checkpoints):
    vit = dict(checkpoints['vit'])
    vit['layers.0.ffn.layers.0.0.weight'] = torch.zeros(256, 64)
    path = str(checkpoints['tmp'] / 'wider_ffn.pth')
    torch.save(dict(state_dict=vit), path)
    with pytest.raises(CheckpointError,
                       match=r'layers\.0\.ffn\.layers\.0\.0\.weight \(256'):
        _init(_build(family, path))


def test_mmpretrain_fine_tuning_checkpoint_needs_its_prefix(checkpoints):
    """A whole-model checkpoint (`backbone.*`, `head.*`) loads with
    ``prefix='backbone.'``; without it, nothing of the ViT is found."""
    whole = {f'backbone.{k}': v for k, v in checkpoints['vit'].items()}
    whole['head.fc.weight'] = torch.zeros(10, 64)
    path = str(checkpoints['tmp'] / 'classifier.pth')
    torch.save(dict(state_dict=whole), path)
    with pytest.raises(CheckpointError, match='backbone.cls_token'):
        _init(_build(CLS_FINETUNE, path))
    loaded = _init(_build(CLS_FINETUNE, path, prefix='backbone.'))
    assert torch.equal(loaded['layers.3.attn.qkv.weight'],
                       checkpoints['vit']['layers.3.attn.qkv.weight'])
    with pytest.raises(CheckpointError, match='init_cfg.prefix'):
        _init(_build(CLS_FINETUNE, path, prefix='encoder.'))


def test_official_mae_checkpoint_loads(checkpoints):
    official = dict(vit_to_timm(checkpoints['vit']))
    official['mask_token'] = torch.zeros(1, 1, 32)
    official['decoder_pred.weight'] = torch.zeros(768, 32)
    path = str(checkpoints['tmp'] / 'mae_official.pth')
    torch.save(dict(model=official, epoch=799), path)
    from_official = _init(_build(DET, path))
    from_converted = _init(_build(DET, checkpoints['converted']))
    for key, value in from_converted.items():
        assert torch.equal(from_official[key], value), key


def test_forgotten_or_broken_file_is_a_clear_error(checkpoints):
    model = _build(SEG, '<set model.backbone.init_cfg.checkpoint>')
    with pytest.raises(FileNotFoundError,
                       match='set model.backbone.init_cfg.checkpoint'):
        _init(model)
    path = checkpoints['tmp'] / 'noise.pth'
    path.write_bytes(b'\x00garbage' * 10)
    with pytest.raises(CheckpointError,
                       match='not a PyTorch checkpoint') as info:
        _init(_build(DET, str(path)))
    assert str(info.value).count(str(path)) == 1
    torch.save(torch.ones(3), path)  # a bare tensor
    with pytest.raises(CheckpointError, match='got a torch.Tensor') as info:
        _init(_build(CLS_FINETUNE, str(path)))
    assert str(info.value).startswith(f'{path}: ')


def test_other_modules_keep_mmengine_behaviour(tmp_path):
    """Only ViT encoders are checked: another module still loads what
    matches and leaves the rest (mmengine's Pretrained)."""

    class Net(BaseModule):

        def __init__(self, init_cfg=None):
            super().__init__(init_cfg)
            self.a = torch.nn.Linear(2, 2)
            self.b = torch.nn.Linear(2, 2)

    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict={'a.weight': torch.ones(2, 2)}), path)
    net = Net(init_cfg=dict(type='Pretrained', checkpoint=path))
    net.init_weights()
    assert torch.equal(net.a.weight, torch.ones(2, 2))
