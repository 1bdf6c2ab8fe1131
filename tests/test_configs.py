"""Every config builds its model and its training pipeline with the real
registries; the ViT-B 300e config takes a loss step on the CPU."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope, init_default_scope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def _registries(scope):
    init_default_scope(scope)
    registry = DefaultScope.get_current_instance().scope_name
    if registry == 'mmseg':
        from mmseg.registry import MODELS, TRANSFORMS
    elif registry == 'mmdet':
        from mmdet.registry import MODELS, TRANSFORMS
    else:
        from mmpretrain.registry import MODELS, TRANSFORMS
    return MODELS, TRANSFORMS


def _load(path):
    cfg = Config.fromfile(path)
    # as the Runner does: the top-level data preprocessor joins the model
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds_model_and_pipeline(path):
    cfg = _load(path)
    MODELS, TRANSFORMS = _registries(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    pipeline = cfg.train_dataloader.dataset.get('pipeline')
    if pipeline is None:  # wrapped datasets (e.g. RepeatDataset)
        pipeline = cfg.train_dataloader.dataset.dataset.pipeline
    assert len(Compose(pipeline).transforms) == len(pipeline)
    if 'mixedae/' in path and 'fashion' not in path:
        assert cfg.train_dataloader.drop_last is True


def test_mixedae_vit_base_300e_loss_step_on_cpu():
    cfg = _load(osp.join(
        ROOT, 'configs/mixedae/'
        'mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'))
    MODELS, _ = _registries(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    imgs = torch.randn(8, 3, 224, 224)
    losses = model.loss(imgs, None)
    for key in ('loss_rec', 'loss_recog'):
        assert torch.isfinite(losses[key]), key
    assert 'loss_homocon' not in losses  # the default has no feature HomoCon
    assert len([k for k in losses if k.startswith('homo_prec_l')]) == 12
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert model.backbone.layers[0].attn.qkv.weight.grad.abs().sum() > 0


def test_merge_whole_replaces_a_spec_also_where_the_config_has_none():
    from mixedae.utils.config import merge_whole
    demo = Config.fromfile(osp.join(
        ROOT, 'configs/mixedae/'
        'mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py'))
    assert demo.model.head.homocon_loss is None
    spec = dict(type='HomologousContrastiveLoss', temperature=0.5)
    with pytest.raises(TypeError, match='homocon_loss'):  # mmengine's merge
        demo.copy().merge_from_dict({'model.head.homocon_loss': spec})
    merge_whole(demo, {'model.head.homocon_loss': spec,
                       'model.backbone.mix_ratio': 0.5})
    assert demo.model.head.homocon_loss == spec  # no `_delete_` left
    assert demo.model.backbone.mix_ratio == 0.5
    # where the config has a spec, the override replaces it whole: the
    # projector of the config is gone, not merged in
    homocon = Config.fromfile(osp.join(
        ROOT, 'configs/mixedae/mixedae-feature-homocon_vit-tiny-p4_1xb128-'
        'coslr-3e_fashion-mnist-32px.py'))
    assert homocon.model.head.homocon_loss.projector
    merge_whole(homocon, {'model.head.homocon_loss': spec})
    assert homocon.model.head.homocon_loss == spec
