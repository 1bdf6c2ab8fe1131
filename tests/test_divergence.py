"""DivergenceHook: real short runs of the demo that diverge (a huge lr)
stop with a one-line error naming the iteration, the loss terms and the
last checkpoint with finite weights, and write no checkpoint with
non-finite weights."""
import glob
import math
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmpretrain.registry import RUNNERS

from conftest import (DATA, DEMO, FEATURE_HOMOCON, ROOT, SMALL_MODEL,
                      demo_cfg)
from mixedae.engine import DivergenceHook, TrainingDiverged
from mixedae.engine.hooks.divergence_hook import loss_scale_collapse


def checkpoints(work_dir):
    return sorted(osp.basename(f) for f in glob.glob(str(work_dir / '*.pth')))


def finite_weights(path):
    # our own file (MultiStepLR's state holds a Counter, which the safe
    # loader refuses)
    state = torch.load(path, map_location='cpu')['state_dict']
    return all(torch.isfinite(t).all() for t in state.values()
               if t.is_floating_point())


def small_cfg(work_dir, num_images, batch_size=4, config=DEMO, **options):
    """The 64-wide, 2-layer demo on test images (faster to load)."""
    cfg = demo_cfg(work_dir, num_images=num_images, batch_size=batch_size,
                   small=True, config=config)
    cfg.train_dataloader.dataset.test_mode = True
    cfg.custom_hooks = []
    cfg.merge_from_dict(options)
    return cfg


def test_the_users_repro_exits_non_zero_with_one_line(tmp_path):
    """`make demo` with `--cfg-options optim_wrapper.optimizer.lr=1e12
    param_scheduler=[]` (the demo shrunk to 2 iterations): it used to log
    `loss: nan`, write a NaN checkpoint and exit 0."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent(f'''\
        _base_ = [{DEMO!r}]
        model = {SMALL_MODEL!r}
        train_dataloader = dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            dataset=dict(data_root={DATA!r}, test_mode=True, indices=8))
        train_cfg = dict(max_epochs=1)
        default_hooks = dict(logger=dict(interval=1))
        '''))
    work = tmp_path / 'work'
    proc = subprocess.run([
        sys.executable, 'tools/train.py', str(cfg), '--work-dir',
        str(work), '--cfg-options', 'optim_wrapper.optimizer.lr=1e12',
        'param_scheduler=[]'
    ], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    # iteration 1 is computed with the initial weights; its step blows
    # them up
    assert last.startswith('TrainingDiverged: Training diverged at '
                           'iteration 2 (epoch 1): non-finite loss_rec = '
                           'nan'), proc.stderr[-3000:]
    assert 'last checkpoint with finite weights: none' in last
    assert 'Traceback' not in proc.stderr
    assert checkpoints(work) == []
    log = glob.glob(str(work / '*' / '*.log'))[0]
    assert last[len('TrainingDiverged: '):] in open(log).read()


def test_divergence_after_a_checkpoint_names_it_and_writes_no_other(
        tmp_path):
    """Epoch 1 trains at the demo's lr and is saved; the lr then jumps to
    1e12: the interval mean logged at iteration 4 is NaN and the run stops
    before the checkpoint of epoch 2, which would have deleted epoch 1's
    (`max_keep_ckpts=1`)."""
    cfg = small_cfg(
        tmp_path, num_images=8, train_cfg=dict(max_epochs=3),
        param_scheduler=[dict(type='MultiStepLR', milestones=[1],
                              gamma=1e15, by_epoch=True)],
        default_hooks=dict(checkpoint=dict(max_keep_ckpts=1)))
    runner = RUNNERS.build(cfg)
    with pytest.raises(TrainingDiverged) as e:
        runner.train()
    message = str(e.value)
    assert '\n' not in message
    ckpt = str(tmp_path / 'epoch_1.pth')
    assert message.startswith('Training diverged at iteration 4 (epoch 2): '
                              'non-finite loss_rec = nan'), message
    assert '(the mean over iterations 3-4)' in message
    assert 'loss_recog = nan' in message
    assert ' loss = ' not in message  # the terms named, not their total
    assert f'last checkpoint with finite weights: {ckpt}.' in message
    assert checkpoints(tmp_path) == ['epoch_1.pth']
    assert finite_weights(ckpt)
    assert (tmp_path / 'last_checkpoint').read_text().strip() == ckpt


def test_nan_after_the_last_log_line_stops_before_the_checkpoint(tmp_path):
    """4 iterations logged after the 3rd only (LoggerHook's ignore_last):
    the lr jumps for the 3rd step, the 4th loss is NaN and reaches no log
    line; the check before the epoch checkpoint finds it."""
    cfg = small_cfg(
        tmp_path, num_images=16,
        param_scheduler=[dict(type='MultiStepLR', milestones=[2],
                              gamma=1e15, by_epoch=False)],
        default_hooks=dict(logger=dict(interval=3)))
    runner = RUNNERS.build(cfg)
    with pytest.raises(TrainingDiverged) as e:
        runner.train()
    message = str(e.value)
    assert message.startswith('Training diverged at iteration 4 (epoch 1): '
                              'non-finite loss_rec = nan'), message
    assert ('(summed since the last log line), before the checkpoint'
            in message)
    assert 'last checkpoint with finite weights: none' in message
    assert checkpoints(tmp_path) == []


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    """Any save (here one outside the schedule) of NaN weights stops before
    the file is written."""
    runner = RUNNERS.build(small_cfg(tmp_path, num_images=8))
    runner.train()
    assert checkpoints(tmp_path) == ['epoch_1.pth']
    with torch.no_grad():
        runner.model.backbone.layers[1].attn.qkv.weight[0, 0] = math.inf
    with pytest.raises(TrainingDiverged, match=(
            r'non-finite weights in backbone.layers.1.attn.qkv.weight in '
            r'the checkpoint about to be saved; last checkpoint with finite '
            r'weights: .*epoch_1.pth')):
        runner.save_checkpoint(str(tmp_path), 'manual.pth')
    assert checkpoints(tmp_path) == ['epoch_1.pth']


def test_turned_off_by_its_key_the_run_trains_on(tmp_path):
    cfg = small_cfg(tmp_path, num_images=8, **{
        'optim_wrapper.optimizer.lr': 1e12, 'default_hooks.divergence': None
    })
    runner = RUNNERS.build(cfg)
    assert 'DivergenceHook' not in [type(h).__name__ for h in runner.hooks]
    runner.train()
    assert not finite_weights(str(tmp_path / 'epoch_1.pth'))


def test_loss_scale_collapse():
    assert loss_scale_collapse(2.0, 65536., 1.0, since=20) is None
    assert loss_scale_collapse(1.0, None, 1.0) is None
    text = loss_scale_collapse(2.**-4, 2.**16, 1.0, since=20)
    assert text == ('the AMP loss scale fell to 0.0625, below '
                    'min_loss_scale=1 (from 6.55e+04 at iteration 20: at '
                    'least 20 optimizer steps skipped for non-finite '
                    'gradients)')
    assert loss_scale_collapse(0.5, None, 1.0) == (
        'the AMP loss scale fell to 0.5, below min_loss_scale=1')


@pytest.mark.parametrize('value', [0, -1., 'x', True])
def test_bad_min_loss_scale_names_the_key(value):
    with pytest.raises(ValueError,
                       match=r'`default_hooks.divergence.min_loss_scale`'):
        DivergenceHook(min_loss_scale=value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='AMP needs CUDA')
def test_amp_loss_scale_collapse_stops_the_run(tmp_path):
    """With AMP, a HomoCon weight of 1e12 keeps the (fp32) loss finite but
    overflows the fp16 gradients at every step: every step is skipped, the
    weights stay those of the initialisation, and the loss scale halves
    from 2^16 until it falls below 1."""
    cfg = small_cfg(
        tmp_path, num_images=64, train_cfg=dict(max_epochs=2),
        config=FEATURE_HOMOCON,
        optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic'),
        default_hooks=dict(logger=dict(interval=5)),
        **{'model.head.homocon_loss.loss_weight': 1e12})
    runner = RUNNERS.build(cfg)
    with pytest.raises(TrainingDiverged) as e:
        runner.train()
    message = str(e.value)
    assert message.startswith('Training diverged at iteration 20 (epoch 2): '
                              'the AMP loss scale fell to 0.0625'), message
    assert 'at least 5 optimizer steps skipped' in message
    ckpt = str(tmp_path / 'epoch_1.pth')
    assert f'last checkpoint with finite weights: {ckpt}.' in message
    assert checkpoints(tmp_path) == ['epoch_1.pth'] and finite_weights(ckpt)
