"""Crash-safe resume: a pre-training killed with SIGKILL mid-epoch and rerun
with ``--resume auto`` continues from its last (epoch) checkpoint exactly as
an uninterrupted run does (same losses, same final weights: fixed seed, CPU,
RNGStateHook in the demo config)."""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(
    ROOT, 'configs/mixedae/mixedae_vit-tiny-p4_1xb128-coslr-3e_'
    'fashion-mnist-32px.py')
DATA = osp.join(ROOT, 'data/fashion_mnist')
ITERS = 8  # per epoch: 64 images, batch 8


def write_config(tmp_path):
    """The demo config (and its custom hooks: visualisation, throughput,
    RNG states), shrunken to 2 epochs of 16 iterations, logging every
    iteration's own values."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent(f'''\
        _base_ = [{DEMO!r}]
        train_dataloader = dict(
            batch_size=8, num_workers=0, persistent_workers=False,
            dataset=dict(indices={8 * ITERS}, data_root={DATA!r}))
        train_cfg = dict(max_epochs=2)
        param_scheduler = [
            dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
                 end=1, convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=2,
                 convert_to_iter_based=True)]
        default_hooks = dict(logger=dict(interval=1))
        log_processor = dict(window_size=1)
        '''))
    return str(cfg)


def train_cmd(cfg, work_dir, *extra):
    return [sys.executable, 'tools/train.py', cfg, '--work-dir',
            str(work_dir), *extra]


# one thread: bit-for-bit reproducible CPU kernels, less contention
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def train_records(work_dir):
    """Training records of every run in ``work_dir``, by iteration."""
    records = {}
    for log in sorted(glob.glob(str(work_dir / '*' / 'vis_data' /
                                    'scalars.json'))):
        for line in open(log):
            r = json.loads(line)
            if 'loss' in r:
                records[r['iter']] = r
    return records


def test_sigkill_then_resume_auto_matches_uninterrupted_run(tmp_path):
    if not osp.exists(osp.join(DATA, 'train-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')
    cfg = write_config(tmp_path)

    # the interrupted run: killed in epoch 2, after epoch_1.pth is written
    crashed = tmp_path / 'crashed'
    proc = subprocess.Popen(train_cmd(cfg, crashed), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            logs = glob.glob(str(crashed / '*' / 'vis_data' / 'scalars.json'))
            # two iterations into epoch 2, so the kill is surely mid-epoch
            if (crashed / 'epoch_1.pth').exists() and logs and sum(
                    1 for _ in open(logs[0])) >= ITERS + 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, 'the run ended before it could be killed'
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (crashed / 'epoch_2.pth').exists()
    killed_at = max(train_records(crashed))
    assert ITERS < killed_at < 2 * ITERS  # mid-epoch 2
    assert (crashed / 'last_checkpoint').read_text().strip().endswith(
        'epoch_1.pth')

    # --resume auto: from epoch_1.pth, to the end
    resumed = subprocess.run(
        train_cmd(cfg, crashed, '--resume', 'auto'), cwd=ROOT, env=ENV,
        capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resumed epoch: 1, iter: {ITERS}' in resumed.stdout + \
        resumed.stderr
    assert 'RNGStateHook: RNG states restored.' in resumed.stdout + \
        resumed.stderr
    logs = sorted(glob.glob(str(crashed / '*' / 'vis_data' / 'scalars.json')))
    assert len(logs) == 2
    after = [json.loads(line) for line in open(logs[1])]
    after = [r for r in after if 'loss' in r]
    assert [r['iter'] for r in after] == list(range(ITERS + 1, 2 * ITERS + 1))

    # the same schedule without interruption
    clean = tmp_path / 'clean'
    subprocess.run(train_cmd(cfg, clean), cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=240)
    reference = train_records(clean)
    for r in after:
        ref = reference[r['iter']]
        for key in ('loss', 'loss_rec', 'loss_recog', 'homo_prec', 'lr'):
            assert r[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), (
                r['iter'], key)

    # ... and ends with the same weights
    a = torch.load(crashed / 'epoch_2.pth', map_location='cpu')
    b = torch.load(clean / 'epoch_2.pth', map_location='cpu')
    for key, value in b['state_dict'].items():
        assert torch.allclose(a['state_dict'][key], value, atol=1e-6), key
    assert len(a['rng_states']) == 1  # one rank
