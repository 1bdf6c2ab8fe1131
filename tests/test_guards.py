"""The guard hooks of a MixedAE pre-training (MixedAEHook, RNGStateHook,
ResumeConfigCheckHook, DivergenceHook) survive a derived config's
`custom_hooks`, are added back by MixedAERunner when the config lost them,
run once, and are turned off only through `default_hooks.<key>=None`."""
import glob
import os.path as osp
import subprocess
import sys
import textwrap
import uuid

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import RUNNERS

from conftest import DATA, DEMO, ROOT, SMALL_MODEL, require_fashion_mnist
from mixedae.engine import GUARDS, MixedAERunner

MAE = osp.join(ROOT, 'configs/mae/mae_vit-tiny-p4_1xb128-coslr-3e_'
               'fashion-mnist-32px.py')
TYPES = list(GUARDS.values())


def derived_config(tmp_path, body, name='derived.py'):
    """The demo, tiny (2 iterations of 8 test images), with ``body``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(f'''\
        _base_ = [{DEMO!r}]
        model = {SMALL_MODEL!r}
        train_dataloader = dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            dataset=dict(data_root={DATA!r}, test_mode=True, indices=8))
        train_cfg = dict(max_epochs=1)
        param_scheduler = [dict(type='ConstantLR', factor=1.0)]
        ''') + textwrap.dedent(body))
    return str(path)


def build(cfg_file, work_dir, runner=None, **options):
    cfg = Config.fromfile(cfg_file)
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'guards_{uuid.uuid4().hex}'  # a fresh logger
    return (runner or RUNNERS.build)(cfg)


def hook_names(runner):
    return [type(h).__name__ for h in runner.hooks]


def log_text(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def test_derived_custom_hooks_keep_the_guards_and_the_resume_check(tmp_path):
    """The issue's case: a derived config that sets `custom_hooks =
    [dict(type='ThroughputHook')]`, one epoch of the demo, then the same
    work dir resumed with a changed model through tools/train.py."""
    require_fashion_mnist()
    cfg = derived_config(tmp_path, '''\
        custom_hooks = [dict(type='ThroughputHook')]
        ''')
    work = tmp_path / 'work'
    runner = build(cfg, work)
    assert isinstance(runner, MixedAERunner)
    names = hook_names(runner)
    for name in TYPES + ['ThroughputHook']:
        assert names.count(name) == 1, (name, names)
    assert 'MixingVisualizationHook' not in names  # the list was replaced
    runner.train()
    assert (work / 'epoch_1.pth').exists()

    proc = subprocess.run([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(work), '--resume', '--cfg-options', 'model.backbone.homo_topk=8'
    ], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f'Refusing to resume {work / "epoch_1.pth"}' in proc.stderr, \
        proc.stderr[-3000:]
    assert 'model.backbone.homo_topk: None in the checkpoint, 8 now' in \
        proc.stderr
    assert sorted(osp.basename(f) for f in glob.glob(str(work / '*.pth'))) \
        == ['epoch_1.pth']


def test_guards_lost_with_delete_are_added_back_and_logged(tmp_path):
    cfg = derived_config(tmp_path, '''\
        default_hooks = dict(
            _delete_=True,
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=1))
        custom_hooks = []
        ''')
    runner = build(cfg, tmp_path / 'work')
    names = hook_names(runner)
    for name in TYPES:
        assert names.count(name) == 1, (name, names)
    log = log_text(runner)
    for key, name in GUARDS.items():
        assert (f'MixedAERunner: The config lacks the guard {name} '
                f'(`default_hooks.{key}`') in log
        assert f'`default_hooks.{key}=None` turns it off.' in log


@pytest.mark.parametrize('key', list(GUARDS))
def test_a_guard_is_turned_off_by_its_named_key_only(tmp_path, key):
    cfg = derived_config(tmp_path, 'custom_hooks = []\n')
    runner = build(cfg, tmp_path / key, **{f'default_hooks.{key}': None})
    names = hook_names(runner)
    assert GUARDS[key] not in names
    for name in TYPES:
        if name != GUARDS[key]:
            assert names.count(name) == 1, (name, names)
    assert (f'MixedAERunner: Training without the guard {GUARDS[key]}: '
            f'`default_hooks.{key}` is None.') in log_text(runner)


def test_a_guard_also_in_custom_hooks_runs_once(tmp_path):
    """A config written before the guards moved (its `custom_hooks` list
    the old way): the same settings register once; others, or a guard
    listed although its key turns it off, stop with the places named."""
    cfg = derived_config(tmp_path, '''\
        custom_hooks = [dict(type='ThroughputHook'),
                        dict(type='MixedAEHook'),
                        dict(type='mmpretrain.RNGStateHook')]
        ''')
    runner = build(cfg, tmp_path / 'same')
    names = hook_names(runner)
    for name in TYPES:
        assert names.count(name) == 1, (name, names)
    log = log_text(runner)
    assert ('MixedAEHook is listed as `default_hooks.mixedae`, '
            '`custom_hooks[1]`: registered once, as `default_hooks.'
            'mixedae`.') in log

    with pytest.raises(ValueError, match=r'configured differently as '
                       r'`default_hooks.mixedae` .* and `custom_hooks\[0\]`'):
        build(cfg, tmp_path / 'other', custom_hooks=[
            dict(type='MixedAEHook', prec_margin=0.1)])
    with pytest.raises(ValueError, match=r'`default_hooks.rng_state` is None'
                       r'.* `custom_hooks\[0\]` lists it'):
        build(cfg, tmp_path / 'off', custom_hooks=[
            dict(type='RNGStateHook')], **{'default_hooks.rng_state': None})


def test_mmengine_runner_gets_the_guards_from_default_hooks(tmp_path):
    """`Runner.from_cfg` (the Fashion-MNIST study, most tests) has no safety
    net but the guards come from `default_hooks`, once each."""
    cfg = derived_config(tmp_path, '''\
        custom_hooks = [dict(type='ThroughputHook')]
        ''')
    runner = build(cfg, tmp_path / 'work', runner=Runner.from_cfg)
    assert type(runner) is Runner
    names = hook_names(runner)
    for name in TYPES:
        assert names.count(name) == 1, (name, names)


@pytest.mark.parametrize('runner', [RUNNERS.build, Runner.from_cfg])
def test_mae_baseline_keeps_its_hooks(tmp_path, runner):
    """The MAE counterpart of the demo inherits the demo's runtime but is
    no MixedAE pre-training: no guard, none added (either runner)."""
    runner = build(MAE, tmp_path / 'mae', runner=runner)
    names = hook_names(runner)
    assert not set(TYPES) & set(names), names
    assert 'CheckpointHook' in names and 'LoggerHook' in names
