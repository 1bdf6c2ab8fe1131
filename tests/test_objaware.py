"""The object-aware pre-training config on a real COCO-layout set (composed
Fashion-MNIST canvases): mmdet's CocoDataset and LoadAnnotations feed
SingleCentricObjectCrop, whose crops are centred on a ground-truth box, and
a tiny MixedAE takes a loss step on the packed batch."""
import importlib.util
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmpretrain.registry import DATASETS

from conftest import build_tiny

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(
    ROOT, 'configs/mixedae/mixedae-objaware_vit-base-p16_8xb512-amp-'
    'coslr-800e_coco.py')


def _compose():
    spec = importlib.util.spec_from_file_location(
        'compose', osp.join(ROOT, 'tools/dataset_converters/'
                            'compose_fashion_mnist_dense.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_objaware_pipeline_crops_on_objects_and_trains(tmp_path):
    compose = _compose()
    sets = compose.compose_fashion_mnist_dense(
        osp.join(ROOT, 'data/fashion_mnist'), str(tmp_path), num_train=8,
        num_val=1, canvas_size=96, seed=0)
    cfg = Config.fromfile(CONFIG)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(
        data_root=sets['coco_root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        metainfo=compose.COCO_METAINFO)
    # 32-px crops for the tiny model (the real config crops 224)
    crop = next(t for t in ds_cfg.pipeline
                if t['type'] == 'SingleCentricObjectCrop')
    crop['scale'] = 32
    dataset = DATASETS.build(ds_cfg)
    assert len(dataset) == 8

    np.random.seed(0)
    *transforms, pack = dataset.pipeline.transforms
    for i in range(len(dataset)):
        results = dataset.get_data_info(i)
        boxes = [inst['bbox'] for inst in results['instances']]
        for t in transforms:
            if type(t).__name__ == 'RandomFlip':
                break
            results = t(results)
        assert results['img'].shape == (32, 32, 3)
        assert results['object_index'] >= 0  # every canvas has objects
        x1, y1, x2, y2 = boxes[results['object_index']]
        cx1, cy1, cx2, cy2 = results['crop_bbox']
        cx, cy = (cx1 + cx2 + 1) / 2, (cy1 + cy2 + 1) / 2
        assert x1 <= cx <= x2 and y1 <= cy <= y2

    data = default_collate([dataset[i] for i in range(8)])
    model = build_tiny()
    inputs = model.data_preprocessor(data, training=True)['inputs']
    assert inputs.shape == (8, 3, 32, 32)
    losses = model.loss(inputs, data['data_samples'])
    assert torch.isfinite(losses['loss_rec'])
    assert torch.isfinite(losses['loss_homocon'])
