"""Logging without host syncs (MixedAE.log_step, MixedAEHook) and the
hook's checks and warnings, on the model and on short real runs."""
import glob
import json
import logging
from collections import OrderedDict

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from conftest import DEMO, FEATURE_HOMOCON, GT_PRIOR, build_tiny, demo_cfg
SYNCS = ('item', 'tolist', '__bool__', '__float__', '__int__', 'cpu',
         'numpy')


class _NoSync:
    """Make every Tensor -> Python conversion raise inside the block: the
    ways a training step can wait for the device from Python."""

    def __enter__(self):
        self.saved = {n: getattr(torch.Tensor, n) for n in SYNCS}

        def refuse(name):
            def method(*args, **kwargs):
                raise AssertionError(f'Tensor.{name} called: a host sync')
            return method

        for name in SYNCS:
            setattr(torch.Tensor, name, refuse(name))

    def __exit__(self, *exc):
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, method)


def _step(model, inputs):
    """The model's part of a training step: forward, parse_losses,
    backward (the optimiser's own bookkeeping is torch's)."""
    loss, log_vars = model.parse_losses(model.loss(inputs, None))
    loss.backward()
    model.zero_grad(set_to_none=True)
    return log_vars


def test_unlogged_step_never_leaves_the_device_and_logs_interval_means():
    torch.manual_seed(0)
    model = build_tiny()
    x = torch.randn(8, 3, 32, 32)
    model.log_step = False
    with _NoSync():  # the check itself can fail: see below
        for _ in range(3):
            assert _step(model, x) == OrderedDict()
    for i in model.backbone.homo_layers:  # no precision computed either
        assert model.backbone.layers[i].attn.homologous_precision is None
    with pytest.raises(AssertionError, match='host sync'), _NoSync():
        float(torch.ones(()))
    # the printed iteration: the mean of the terms over the 4 iterations
    # since the last print, and this iteration's precision per layer
    sums = model._pending_log[1].clone()
    model.log_step = True
    logged = _step(model, x)
    assert set(logged) >= {'loss', 'loss_rec', 'loss_homocon', 'homo_prec',
                           'homo_prec_l0', 'homo_prec_l1'}
    assert model._pending_log is None
    # the last iteration's terms are the difference of the two sums
    names = [k for k in logged if not k.startswith('homo_prec')]
    last = torch.stack([logged[k] for k in names]) * 4 - sums
    assert torch.allclose(last[names.index('loss')],
                          last[names.index('loss_rec')] +
                          last[names.index('loss_homocon')], atol=1e-5)
    assert 0 < float(logged['homo_prec_l0']) < 1


def test_parse_losses_averages_since_the_last_logged_iteration():
    model = build_tiny()
    model.log_step = False
    for value in (1., 2., 3.):
        loss, log_vars = model.parse_losses(dict(
            loss_rec=torch.tensor(value)))
        assert float(loss) == value and not log_vars
    model.log_step = True
    _, log_vars = model.parse_losses(dict(
        loss_rec=torch.tensor(6.), homo_prec_l0=torch.tensor(.5)))
    assert float(log_vars['loss_rec']) == 3.  # (1 + 2 + 3 + 6) / 4
    assert float(log_vars['homo_prec_l0']) == .5  # this iteration only
    _, log_vars = model.parse_losses(dict(loss_rec=torch.tensor(8.)))
    assert float(log_vars['loss_rec']) == 8.  # a fresh interval


def _cfg(work_dir, config=DEMO, **overrides):
    """6 iterations of 16 images, printed every 4, with the hook."""
    cfg = demo_cfg(work_dir, num_images=96, batch_size=16, config=config)
    cfg.default_hooks.logger.interval = 4
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = []  # MixedAEHook is a guard, in default_hooks
    cfg.merge_from_dict(overrides)
    return cfg


@pytest.mark.parametrize('config, recorded', [
    (DEMO, [3]),  # no cue: the selection as trained is the content one
    (GT_PRIOR, [3, 3]),  # a cue: once as trained, once without it
])
def test_run_prints_every_interval_and_precision_only_then(
        tmp_path, config, recorded):
    runner = Runner.from_cfg(_cfg(tmp_path, config=config))
    calls = []
    model = runner.model
    orig = model.backbone.record_precision

    def record(enabled=True):
        calls.append((runner.iter, enabled))
        orig(enabled)

    model.backbone.record_precision = record
    runner.train()
    # 6 iterations, printed after the 4th only: LoggerHook's default
    # ignore_last skips the last, shorter interval of the epoch; only then
    # is any precision recorded (as trained, then from content alone)
    assert {it for it, _ in calls} == set(range(6))
    assert [it for it, enabled in calls if enabled] == recorded
    log = glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))[0]
    records = [json.loads(line) for line in open(log)]
    assert [r['iter'] for r in records] == [4]
    assert all('homo_prec_l5' in r and 'loss_rec' in r for r in records)
    assert model.log_step  # restored after training


@pytest.mark.parametrize('overrides, key', [
    (dict(train_dataloader=dict(batch_size=18)),
     'train_dataloader.batch_size'),
    # 98 images in batches of 20: a last batch of 18
    (dict(train_dataloader=dict(drop_last=False, batch_size=20,
                                dataset=dict(indices=98))), 'drop_last'),
])
def test_bad_batches_stop_before_the_first_iteration(tmp_path, overrides,
                                                     key):
    runner = Runner.from_cfg(_cfg(tmp_path, **overrides))
    with pytest.raises(ValueError, match=key):
        runner.train()
    assert runner.iter == 0


def test_visualisation_batch_checked_before_training(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.custom_hooks.append(
        dict(type='MixingVisualizationHook', num_images=6))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match='num_images'):
        runner.train()
    assert runner.iter == 0


def test_warnings_below_chance_and_at_the_homocon_floor(tmp_path):
    """The hook's checks on the values it reads after a printed
    iteration (a real run cannot be steered below chance in seconds)."""
    runner = Runner.from_cfg(_cfg(tmp_path, config=FEATURE_HOMOCON))
    hook = next(h for h in runner.hooks if type(h).__name__ == 'MixedAEHook')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model = runner.model
        model.log_step = True
        floor = model.head.homocon_loss.floor(64, 4)  # about 0.1 * ln 15
        hook.after_train_iter(runner, 0, outputs=dict(
            homo_prec_l0=torch.tensor(.24), homo_prec_l5=torch.tensor(.10),
            loss_homocon=torch.tensor(floor * 1.01)))
        hook.after_train_iter(runner, 1, outputs=dict(
            homo_prec_l5=torch.tensor(.05)))  # once per epoch
    finally:
        logger.removeHandler(handler)
    text = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(text) == 2, text
    assert 'homo_prec_l5 = 0.100 is below chance (0.246' in text[0]
    assert 'homo_prec_l0' not in ' '.join(text)  # within the margin
    assert 'loss_homocon' in text[1] and f'{floor:.4f}' in text[1]
