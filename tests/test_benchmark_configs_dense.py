"""The full-scale ADE20K / COCO benchmark configs: real model, real train
pipeline, real layer decay, and a loss step of the full ViT-B model.

The loss steps run at the real training size, as the downstream issue asks:
UperNet on 2 x 512 x 512 from its own train pipeline (the per-GPU batch; the
PPM's BatchNorm needs 2 images), Mask R-CNN on 1 x 800 x 1333 (the largest
multi-scale input) with 2 random boxes / masks. They are the slowest tests
of the suite (about a minute each on 2 CPU cores, peak RSS 6.7 GB).
"""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FMNIST = osp.join(ROOT, 'data', 'fashion_mnist')
SEG_CONFIG = osp.join(
    ROOT, 'configs/benchmarks/mmsegmentation',
    'upernet_vit-base-p16_mixedae-pre_8xb2-amp-160k_ade20k-512x512.py')
# the mmseg recipe the ADE20K config follows
MAE_RECIPE = osp.join(
    osp.dirname(importlib.util.find_spec('mmseg').origin),
    '.mim/configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py')
DET_CONFIG = osp.join(
    ROOT, 'configs/benchmarks/mmdetection',
    'mask-rcnn_vit-base-p16_mixedae-pre_fpn_8xb2-amp-ms-1x_coco.py')

def _compose_module():
    spec = importlib.util.spec_from_file_location(
        'compose_fashion_mnist_dense',
        osp.join(ROOT, 'tools/dataset_converters/'
                 'compose_fashion_mnist_dense.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def dense_sets(tmp_path_factory):
    return _compose_module().compose_fashion_mnist_dense(
        FMNIST, str(tmp_path_factory.mktemp('fmnist_dense')), num_train=4,
        num_val=1, canvas_size=64, seed=0)


def _build(path):
    cfg = Config.fromfile(path)  # runs custom_imports
    init_default_scope(cfg.default_scope)
    if DefaultScope.get_current_instance().scope_name == 'mmseg':
        from mmseg.registry import DATASETS, MODELS
    else:
        from mmdet.registry import DATASETS, MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)  # no init_weights: no checkpoint here
    return cfg, model, DATASETS


def _pipeline_batch(cfg, datasets, dataset_overrides, num):
    """``num`` samples of the config's own train pipeline on composed
    Fashion-MNIST images."""
    dataset_cfg = cfg.train_dataloader.dataset.copy()
    dataset_cfg.update(dataset_overrides)
    dataset = datasets.build(dataset_cfg)
    return pseudo_collate([dataset[i] for i in range(num)])


def _loss_step(model, data):
    model.train()
    data = model.data_preprocessor(data, training=True)
    losses = model(**data, mode='loss')
    for key, value in losses.items():
        if 'loss' in key:
            values = value if isinstance(value, list) else [value]
            assert all(torch.isfinite(v).all() for v in values), key
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert model.backbone.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.backbone.patch_embed.projection.weight.grad is not None
    return data['inputs'].shape


def _seg_random_batch(size, num=2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(num):
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 150, (1, size, size)))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
              for _ in range(num)]
    return dict(inputs=inputs, data_samples=samples)


def _det_random_batch(h, w):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    boxes = torch.tensor([[0.1 * w, 0.15 * h, 0.4 * w, 0.6 * h],
                          [0.5 * w, 0.3 * h, 0.9 * w, 0.9 * h]]).round()
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        m[y1:y2, x1:x2] = 1
    gt = InstanceData(bboxes=boxes, labels=torch.tensor([3, 17]),
                      masks=BitmapMasks(masks.numpy(), h, w))
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
    sample.gt_instances = gt
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8)]
    return dict(inputs=inputs, data_samples=[sample])


def _assert_layer_decay(cfg, model, rate):
    wrapper_cfg = cfg.optim_wrapper.copy()
    assert wrapper_cfg.type == 'AmpOptimWrapper'  # GPU only: built as plain
    wrapper_cfg.type = 'OptimWrapper'
    groups = build_optim_wrapper(model, wrapper_cfg).optimizer.param_groups
    by_name = {g['param_name']: g for g in groups}
    assert len(by_name) == sum(1 for p in model.parameters()
                               if p.requires_grad)
    lr = cfg.optim_wrapper.optimizer.lr
    # depth 0 stem, layer i at i + 1, necks / heads at 13 (lr x 1)
    for name, depth in (('backbone.patch_embed.projection.weight', 0),
                        ('backbone.pos_embed', 0),
                        ('backbone.layers.0.attn.qkv.weight', 1),
                        ('backbone.layers.11.ffn.layers.1.weight', 12),
                        ('backbone.ln1.weight', 13)):
        assert by_name[name]['lr'] == pytest.approx(lr * rate**(13 - depth))
    heads = [g for n, g in by_name.items() if not n.startswith('backbone.')]
    assert heads and all(g['lr'] == pytest.approx(lr) for g in heads)
    assert by_name['backbone.pos_embed']['weight_decay'] == 0
    assert by_name['backbone.layers.0.ln1.weight']['weight_decay'] == 0
    assert by_name['backbone.layers.0.attn.qkv.weight']['weight_decay'] == \
        cfg.optim_wrapper.optimizer.weight_decay


def _seg_dataset(dense_sets):
    return dict(
        data_root=dense_sets['ade_root'], img_suffix='.png',
        seg_map_suffix='.png')


def _det_dataset(dense_sets):
    return dict(
        data_root=dense_sets['coco_root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        metainfo=_compose_module().COCO_METAINFO)


def _plain(path):
    """A config file as a plain dict, without mmengine's ``_scope_`` marks
    (added to everything inherited through ``mmseg::``)."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != '_scope_'}
        if isinstance(x, (list, tuple)):
            return type(x)(strip(v) for v in x)
        return x

    return strip(Config.fromfile(path).to_dict())


def test_upernet_config_is_mmseg_mae_recipe_but_the_named_parts():
    """Every setting but the backbone, the weights, the AMP wrapper and the
    layer-decay constructor (the differences the config names) is the
    recipe's."""
    ours, recipe = _plain(SEG_CONFIG), _plain(MAE_RECIPE)
    assert set(ours) - set(recipe) == {'custom_imports', 'pretrained',
                                       'fresh_keys'}
    for key in set(recipe) - {'model', 'optim_wrapper'}:
        assert ours[key] == recipe[key], key
    ours_model, recipe_model = ours['model'], recipe['model']
    for key in set(recipe_model) | set(ours_model):
        if key not in ('backbone', 'pretrained'):
            assert ours_model[key] == recipe_model[key], key
    assert ours_model['neck'] == dict(
        type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5])
    assert ours_model['pretrained'] is None
    assert ours['optim_wrapper'] == dict(
        recipe['optim_wrapper'], type='AmpOptimWrapper',
        constructor='ViTLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0))
    mae, vit = recipe_model['backbone'], ours_model['backbone']
    assert mae['type'] == 'MAE' and vit['type'] == 'mmpretrain.BEiTViT'
    assert mae['init_values'] == vit['layer_scale_init_value'] == 1.0
    assert mae['out_indices'] == vit['out_indices'] == [3, 5, 7, 11]
    assert mae['drop_path_rate'] == vit['drop_path_rate'] == 0.1
    assert mae['norm_cfg'] == vit['norm_cfg']
    assert tuple(mae['img_size']) == (vit['img_size'], ) * 2


def test_upernet_backbone_is_the_recipes_mae_on_one_checkpoint(tmp_path):
    """Our backbone and mmseg's MAE (each built from its config, shrunk to 4
    layers of 64 dims), initialised by their own ``init_weights`` from one
    converted 32-px ViT checkpoint: the same tensors, except the relative
    position bias tables' init (difference 2), and the same features."""
    from mmpretrain.models import VisionTransformer
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    arch = dict(embed_dims=64, num_layers=4, num_heads=2,
                feedforward_channels=256)
    torch.manual_seed(0)
    vit = VisionTransformer(
        arch=arch, img_size=32, patch_size=16, final_norm=True)
    with torch.no_grad():  # as if trained: nothing at its init value
        for param in vit.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    ckpt = str(tmp_path / 'vit.pth')
    torch.save(dict(state_dict=vit.state_dict()), ckpt)

    cfg = Config.fromfile(SEG_CONFIG).model.backbone
    cfg.update(arch=arch, img_size=64, out_indices=[0, 1, 2, 3])
    cfg.init_cfg.checkpoint = ckpt
    recipe_cfg = Config.fromfile(MAE_RECIPE).model.backbone
    recipe_cfg.update(img_size=(64, 64), embed_dims=64, num_layers=4,
                      num_heads=2, out_indices=[0, 1, 2, 3],
                      init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ours = PRETRAIN_MODELS.build(cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):  # mmseg's MAE
        recipe = SEG_MODELS.build(recipe_cfg)
    for model in (ours, recipe):
        model.init_weights()
    a, b = ours.state_dict(), recipe.state_dict()
    assert set(a) == set(b)
    tables = {k for k in a if k.endswith('relative_position_bias_table')}
    assert len(tables) == 4
    for key in set(a) - tables:
        assert torch.equal(a[key], b[key]), key
    for key in tables:  # mmseg: zeros; mmpretrain: trunc-normal std 0.02
        assert not b[key].any() and 0.01 < a[key].std() < 0.03, key
    assert all((a[f'layers.{i}.gamma_{j}'] == 1).all() for i in range(4)
               for j in (1, 2))
    assert a['pos_embed'].shape == (1, 17, 64)  # 2x2 grid resized to 4x4
    ours.load_state_dict(b)  # the recipe's zero tables: same network
    ours.eval(), recipe.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for f, g in zip(ours(x), recipe(x), strict=True):
            assert f.shape == (2, 64, 4, 4)
            torch.testing.assert_close(f, g, rtol=0, atol=1e-5)


def test_upernet_config_model_decay_and_pipeline(dense_sets):
    cfg, model, DATASETS = _build(SEG_CONFIG)
    assert type(model.backbone).__name__ == 'BEiTViT'
    assert type(model.neck).__name__ == 'Feature2Pyramid'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.val_evaluator.type == 'IoUMetric'
    # the recipe's own model (mmseg's MAE backbone): same parameters, and
    # our optimizer gives each the lr and weight decay that the recipe's
    # (LayerDecayOptimizerConstructor) gives it in the recipe's model
    recipe = Config.fromfile(MAE_RECIPE)
    recipe.model.pretrained = None
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    recipe_model = MODELS.build(recipe.model)
    assert {k: p.shape for k, p in model.named_parameters()} == {
        k: p.shape for k, p in recipe_model.named_parameters()}
    wrapper_cfg = cfg.optim_wrapper.copy()
    assert wrapper_cfg.pop('type') == 'AmpOptimWrapper'  # needs a GPU

    def lr_and_decay(model, wrapper):
        groups = build_optim_wrapper(model, wrapper).optimizer.param_groups
        return {name: (g['lr'], g['weight_decay']) for g in groups
                for name in g.get('param_names', [g.get('param_name')])}

    ours = lr_and_decay(model, dict(wrapper_cfg, type='OptimWrapper'))
    assert ours == lr_and_decay(recipe_model, recipe.optim_wrapper)
    assert len(ours) == sum(1 for _ in model.parameters())
    lr, wd = 1e-4, 0.05
    # mmseg's rule: layer i at 0.65 ** (12 - i), the stem at 0.65 ** 13,
    # neck and heads at lr; no decay for 1-d tensors (norms, biases, layer
    # scales) but decay for pos_embed / cls_token (its name check compares
    # 'pos_embed' with 'backbone.pos_embed')
    for name, scale, decay in (
            ('backbone.pos_embed', 0.65**13, wd),
            ('backbone.cls_token', 0.65**13, wd),
            ('backbone.patch_embed.projection.bias', 0.65**13, 0),
            ('backbone.layers.0.attn.qkv.weight', 0.65**12, wd),
            ('backbone.layers.0.gamma_1', 0.65**12, 0),
            ('backbone.layers.5.attn.relative_position_bias_table',
             0.65**7, wd),
            ('backbone.layers.11.ln2.weight', 1 * 0.65, 0),
            ('neck.upsample_4x.0.weight', 1, wd),
            ('decode_head.conv_seg.weight', 1, wd)):
        assert ours[name] == (pytest.approx(lr * scale), decay), name
    # the real train pipeline on composed (64-px) images -> 512 crops
    data = _pipeline_batch(cfg, DATASETS, _seg_dataset(dense_sets), 2)
    assert all(max(i.shape[1:]) <= 512 for i in data['inputs'])
    out = model.data_preprocessor(data, training=True)['inputs']
    assert out.shape == (2, 3, 512, 512)


def test_upernet_full_model_loss_step_real_size(dense_sets):
    cfg, model, DATASETS = _build(SEG_CONFIG)
    data = _pipeline_batch(cfg, DATASETS, _seg_dataset(dense_sets), 2)
    assert _loss_step(model, data) == (2, 3, 512, 512)


def test_mask_rcnn_config_model_decay_and_pipeline(dense_sets):
    cfg, model, DATASETS = _build(DET_CONFIG)
    assert type(model.backbone).__name__ == 'VisionTransformer'
    assert [type(m).__name__ for m in model.neck] == [
        'SimpleFeaturePyramid', 'FPN']
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    _assert_layer_decay(cfg, model, 0.75)
    # neck output: 5 levels at strides 4 .. 64 from the stride-16 map
    with torch.no_grad():
        feats = model.neck(
            (torch.zeros(1, 768, 8, 8), ))  # a 128-px input's ViT map
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    # the real multi-scale pipeline: shorter side 480..800, longer <= 1333
    data = _pipeline_batch(cfg, DATASETS, _det_dataset(dense_sets), 1)
    h, w = data['inputs'][0].shape[1:]
    assert 480 <= min(h, w) <= 800 and max(h, w) <= 1333
    assert len(data['data_samples'][0].gt_instances) > 0


def test_mask_rcnn_full_model_loss_step_real_size(dense_sets):
    """The largest multi-scale training input, 800 x 1333 (padded to
    800 x 1344), with 2 random boxes / masks."""
    _, model, _ = _build(DET_CONFIG)
    assert _loss_step(model, _det_random_batch(800, 1333)) == (1, 3, 800,
                                                                1344)


def test_adapter_errors_name_the_argument():
    from projects.dense_vit.dense_vit import (
        SimpleFeaturePyramid, ViTLayerDecayOptimWrapperConstructor)
    with pytest.raises(ValueError, match='`in_channels`'):
        SimpleFeaturePyramid(in_channels=66)
    with pytest.raises(ValueError, match='`scales`'):
        SimpleFeaturePyramid(in_channels=64, scales=(8, 1))
    fpn = SimpleFeaturePyramid(in_channels=64)
    with pytest.raises(ValueError, match='out_type="featmap"'):
        fpn((torch.zeros(1, 17, 64), ))  # a token sequence, not a map
    assert [f.shape[-1] for f in fpn([torch.zeros(1, 64, 4, 4)])] == [
        16, 8, 4, 2]
    plain = torch.nn.Sequential()
    plain.backbone = torch.nn.Linear(2, 2)  # no get_layer_depth
    constructor = ViTLayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
        dict(layer_decay_rate=0.5))
    with pytest.raises(TypeError, match='get_layer_depth'):
        constructor(plain)
