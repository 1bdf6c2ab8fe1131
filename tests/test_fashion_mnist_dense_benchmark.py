"""The dense-transfer benchmark end to end, in its smoke mode.

Real composed canvases, a real (2-iteration) MAE pre-training with the
Fashion-MNIST benchmark's ``pretrain``, and the real UperNet / Mask R-CNN
configs fine-tuned and evaluated by the Runner (IoUMetric, CocoMetric).
"""
import importlib.util
import json
import math
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FMNIST = osp.join(ROOT, 'data', 'fashion_mnist')


def _bench():
    spec = importlib.util.spec_from_file_location(
        'fashion_mnist_dense_benchmark',
        osp.join(ROOT, 'benchmarks/fashion_mnist_dense/run.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()


def test_smoke_run_writes_json_and_table(tmp_path):
    out = tmp_path / 'dense'
    result = bench.main([
        '--smoke', '--methods', 'MAE', '--out-dir', str(out),
        '--data-root', FMNIST, '--lr', '2e-3',
        '--reuse-dirs'  # no reuse: pre-trains here
    ])
    saved = json.load(open(out / 'results.json'))
    assert saved['summary'] == json.loads(json.dumps(result['summary']))
    methods = ['random init', 'MAE']
    assert saved['settings']['methods'] == methods
    # --lr reaches both fine-tuning Runners
    assert saved['settings']['optim']['lr'] == 2e-3
    from mmengine.config import Config
    for task in ('seg', 'det'):
        dumped, = (out / 'mae_seed0' / task).glob('*.py')  # the Runner's dump
        assert Config.fromfile(str(dumped)).optim_wrapper.optimizer.lr == 2e-3
    assert [(r['method'], r['seed']) for r in saved['runs']] == [
        ('random init', 0), ('MAE', 0)]
    # the metrics are recorded (numbers, tabled below); 2 iterations leave
    # the heads untrained (measured mIoU ~1, AP ~0 for both methods), so no
    # margin can show here: learning on these composed sets is tested
    # against the random-init floor in test_downstream_dense.py
    for run in saved['runs']:
        for key in ('mIoU', 'bbox_mAP', 'segm_mAP', 'bbox_mAP_50',
                    'segm_mAP_50'):
            assert math.isfinite(run[key]), (key, run)
        for task in ('seg', 'det'):
            assert math.isfinite(run[task]['final_loss'])
            assert run[task]['train_loop_seconds'] > 0
    assert saved['runs'][0]['encoder']['source'] == 'random init'
    mae = saved['runs'][1]['encoder']
    assert mae['source'].startswith('pre-trained here')
    assert mae['pretrain_iters'] == 2  # 64 images, batch 32, 1 epoch
    for method in methods:
        stats = saved['summary'][method]
        for key in bench.METRICS:
            assert stats[key]['n'] == 1 and stats[key]['std'] is None
            assert stats[key]['mean'] == saved['runs'][methods.index(
                method)][key]
    table = (out / 'results.md').read_text()
    lines = table.splitlines()
    assert lines[0] == '| method | mIoU (%) | AP^box (%) | AP^mask (%) |'
    for i, method in enumerate(methods):
        cells = [c.strip() for c in lines[2 + i].strip('|').split('|')]
        assert cells[0] == method and len(cells) == 4
        for c, key in zip(cells[1:], bench.METRICS):
            assert float(c) == pytest.approx(
                saved['summary'][method][key]['mean'], abs=0.05)
    # the fine-tuned models loaded the converted encoders
    assert (out / 'mae_seed0' / 'vit_init.pth').is_file()
    assert (out / 'data' / 'coco' / 'annotations' /
            'instances_val.json').is_file()


def test_bad_lr_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match='--lr must be positive'):
        bench.main(['--smoke', '--lr', '0', '--data-root', FMNIST,
                    '--out-dir', str(tmp_path / 'o')])


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='Fashion-MNIST is missing'):
        bench.main(['--smoke', '--data-root', str(tmp_path),
                    '--out-dir', str(tmp_path / 'o')])
