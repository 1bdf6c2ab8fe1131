"""ThroughputHook and RNGStateHook in a short real run of the demo config."""
import glob
import json
import random

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from conftest import demo_cfg
from mixedae.engine.hooks import ThroughputHook
from mixedae.engine.hooks.rng_state_hook import get_rng_states, set_rng_states
from mixedae.utils.checkpoint import load_checkpoint_safely


def small_demo_cfg(work_dir):
    """The 64-wide, 2-layer demo on 16 of the 10k test images (faster to
    load; labels are unused), 2 epochs of 2 iterations, logged every
    iteration."""
    cfg = demo_cfg(work_dir, num_images=16, batch_size=8, small=True)
    cfg.train_dataloader.dataset.test_mode = True
    cfg.train_cfg.max_epochs = 2
    cfg.default_hooks.logger.interval = 1
    return cfg


class _DrawAfterEpoch(Hook):
    """A LOW hook that draws random numbers at the end of every epoch, as
    MixingVisualizationHook does (it draws mixing masks)."""

    def after_train_epoch(self, runner):
        torch.rand(3)
        np.random.rand(3)
        random.random()


class _RecordRNGAfterEpoch(Hook):
    """The RNG states at the end of every epoch, after every other hook
    (CheckpointHook included)."""

    def __init__(self):
        self.states = []

    def after_train_epoch(self, runner):
        self.states.append(get_rng_states())


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """2 epochs of 2 iterations of 8 images (a checkpoint after each) with
    both hooks, logged every iteration."""
    work_dir = tmp_path_factory.mktemp('hooks')
    cfg = small_demo_cfg(work_dir)
    cfg.log_processor = dict(window_size=1)
    # RNGStateHook is a guard, in default_hooks
    cfg.custom_hooks = [dict(type='ThroughputHook', window_size=1)]
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_DrawAfterEpoch(), priority='LOW')
    recorder = _RecordRNGAfterEpoch()
    runner.register_hook(recorder, priority='LOWEST')
    runner.train()
    log = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))[0]
    return work_dir, [json.loads(line) for line in open(log)], recorder.states


def test_throughput_in_scalars_and_log_line(trained):
    work_dir, records, _ = trained
    assert len(records) == 4
    for r in records:
        # 8 images per iteration, one process
        assert r['img_per_sec'] == pytest.approx(8 / r['time'])
    text = open(glob.glob(str(work_dir / '*' / '*.log'))[0]).read()
    lines = [line for line in text.splitlines() if 'Epoch(train)' in line]
    assert len(lines) == 4
    for line in lines:
        assert 'eta: ' in line and 'img_per_sec: ' in line
        assert 'loss_rec: ' in line and 'loss_recog: ' in line


def test_throughput_hook_rejects_bad_window():
    with pytest.raises(ValueError, match='window_size'):
        ThroughputHook(window_size=0)


def test_checkpoint_holds_rng_states_loadable_safely(trained):
    work_dir, _, _ = trained
    ckpt = load_checkpoint_safely(str(work_dir / 'epoch_1.pth'))
    states = ckpt['rng_states']
    assert isinstance(states, list) and len(states) == 1  # one rank
    assert set(states[0]) >= {'python', 'numpy', 'torch'}


def test_checkpoints_hold_the_rng_states_after_every_other_hook(trained):
    """Each epoch checkpoint holds the states as they are once every hook
    of that epoch has drawn (here a LOW hook drawing like the
    visualisation hook): what the next epoch of an uninterrupted run starts
    from. RNGStateHook snapshotting before that hook, or after
    CheckpointHook (a stale snapshot reaching the next checkpoint), fails
    this."""
    work_dir, _, after_epoch = trained
    assert len(after_epoch) == 2
    for epoch, expected in enumerate(after_epoch, 1):
        saved, = load_checkpoint_safely(
            str(work_dir / f'epoch_{epoch}.pth'))['rng_states']
        assert torch.equal(saved['torch'], expected['torch']), epoch
        assert saved['python'] == expected['python'], epoch
        assert torch.equal(saved['numpy'][1], expected['numpy'][1]), epoch
        assert saved['numpy'][2] == expected['numpy'][2], epoch


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
