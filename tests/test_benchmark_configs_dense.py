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


def test_upernet_config_model_decay_and_pipeline(dense_sets):
    cfg, model, DATASETS = _build(SEG_CONFIG)
    assert type(model.backbone).__name__ == 'VisionTransformer'
    assert type(model.neck).__name__ == 'MultiLevelNeck'
    assert model.neck.scales == [4, 2, 1, 0.5]
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.val_evaluator.type == 'IoUMetric'
    # mmseg's own layer-decay constructor does not know mmpretrain's ViT
    # (the reason for ViTLayerDecayOptimWrapperConstructor)
    with pytest.raises(NotImplementedError):
        build_optim_wrapper(model, dict(
            optimizer=dict(type='AdamW', lr=1e-4),
            constructor='LayerDecayOptimizerConstructor',
            paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65)))
    _assert_layer_decay(cfg, model, 0.65)
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
