"""ThroughputHook and RNGStateHook in a short real run of the demo config."""
import glob
import json
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mixedae.engine.hooks import RNGStateHook, ThroughputHook
from mixedae.engine.hooks.rng_state_hook import get_rng_states, set_rng_states
from mixedae.utils.checkpoint import load_checkpoint_safely

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(
    ROOT, 'configs/mixedae/mixedae_vit-tiny-p4_1xb128-coslr-3e_'
    'fashion-mnist-32px.py')
DATA = osp.join(ROOT, 'data/fashion_mnist')


def small_demo_cfg(work_dir):
    """The demo config with a 2-layer, 64-dim model, reading the 10k test
    images (faster to load; labels are unused)."""
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(work_dir)
    cfg.model.backbone.arch = dict(
        embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
    cfg.model.neck.update(
        embed_dim=64, decoder_embed_dim=32, decoder_depth=1,
        decoder_num_heads=2)
    cfg.train_dataloader.dataset.data_root = DATA
    cfg.train_dataloader.dataset.test_mode = True
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """4 iterations of 8 images with both hooks, logged every iteration."""
    if not osp.exists(osp.join(DATA, 't10k-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')
    work_dir = tmp_path_factory.mktemp('hooks')
    cfg = small_demo_cfg(work_dir)
    cfg.train_dataloader.dataset.indices = 32
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor = dict(window_size=1)
    cfg.custom_hooks = [
        dict(type='ThroughputHook', window_size=1),
        dict(type='RNGStateHook')
    ]
    Runner.from_cfg(cfg).train()
    log = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))[0]
    return work_dir, [json.loads(line) for line in open(log)]


def test_throughput_in_scalars_and_log_line(trained):
    work_dir, records = trained
    assert len(records) == 4
    for r in records:
        # 8 images per iteration, one process
        assert r['img_per_sec'] == pytest.approx(8 / r['time'])
    text = open(glob.glob(str(work_dir / '*' / '*.log'))[0]).read()
    lines = [line for line in text.splitlines() if 'Epoch(train)' in line]
    assert len(lines) == 4
    for line in lines:
        assert 'eta: ' in line and 'img_per_sec: ' in line
        assert 'loss_rec: ' in line and 'loss_homocon: ' in line


def test_throughput_hook_rejects_bad_window():
    with pytest.raises(ValueError, match='window_size'):
        ThroughputHook(window_size=0)


def test_hook_priorities_bracket_their_neighbours():
    # ThroughputHook between IterTimerHook (50) and LoggerHook (60);
    # RNGStateHook between the LOW hooks (70) and CheckpointHook (90)
    assert 50 < ThroughputHook.priority < 60
    assert 70 < RNGStateHook.priority < 90


def test_checkpoint_holds_rng_states_loadable_safely(trained):
    work_dir, _ = trained
    ckpt = load_checkpoint_safely(str(work_dir / 'epoch_1.pth'))
    states = ckpt['rng_states']
    assert isinstance(states, list) and len(states) == 1  # one rank
    assert set(states[0]) >= {'python', 'numpy', 'torch'}


def test_rng_states_round_trip():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    states = get_rng_states()

    def draw():
        return (torch.rand(4), np.random.rand(4), np.random.randn(),
                random.random())

    first = draw()
    set_rng_states(states)
    second = draw()
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2:] == second[2:]
    # the states are plain python values and tensors: no numpy objects
    assert not isinstance(states['numpy'][1], np.ndarray)
