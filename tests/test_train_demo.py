"""A short real run of the demo config on Fashion-MNIST with mmengine's
Runner: losses and homologous precision logged, checkpoint and pictures
written."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(
    ROOT, 'configs/mixedae/mixedae_vit-tiny-p4_1xb128-coslr-3e_'
    'fashion-mnist-32px.py')
DATA = osp.join(ROOT, 'data/fashion_mnist')


def demo_cfg(work_dir, num_images=256, batch_size=32):
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.dataset.data_root = DATA
    cfg.train_dataloader.dataset.indices = num_images
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 2
    cfg.custom_hooks = [
        dict(type='MixingVisualizationHook', num_images=8, zoom=2)
    ]
    return cfg


def test_demo_trains_on_fashion_mnist_and_leaves_outputs(tmp_path):
    if not osp.exists(osp.join(DATA, 'train-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')
    runner = Runner.from_cfg(demo_cfg(tmp_path))
    runner.train()
    logs = glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))
    assert logs
    records = [json.loads(line) for line in open(logs[0])]
    train = [r for r in records if 'loss_rec' in r]
    assert len(train) == 4  # 8 iterations, logged every 2
    # every term and layer logged (that training learns is checked in
    # test_pretraining_learns.py)
    for r in train:
        assert {'loss_rec', 'loss_homocon', 'homo_prec'} | {
            f'homo_prec_l{i}' for i in range(6)} <= set(r)
    assert osp.exists(tmp_path / 'epoch_1.pth')
    pngs = glob.glob(str(tmp_path / 'vis' / 'epoch_1' / 'group_*.png'))
    assert len(pngs) == 2  # 8 images in groups of 4
