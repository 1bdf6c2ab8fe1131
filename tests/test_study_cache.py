"""The Fashion-MNIST study's statistics and its per-run cache: paired
differences against MAE with Student-t intervals, and a study that resumes
from (and reports from) the runs it already finished."""
import json
import math

import pytest

from conftest import DATA, load_script, require_fashion_mnist

bench = load_script('benchmarks/fashion_mnist/run.py')


def test_paired_differences_use_the_same_seed_and_a_t_interval():
    runs = [dict(method='MAE', seed=s, knn_top1=v)
            for s, v in ((0, 70.), (1, 80.), (2, 75.))]
    # differences against the same seed: +1, +2, +3 (the raw means differ
    # by 2 too, but the seeds' spread of 5 points must not enter the CI)
    runs += [dict(method='X', seed=s, knn_top1=v)
             for s, v in ((0, 71.), (1, 82.), (2, 78.))]
    runs.append(dict(method='Y', seed=1, knn_top1=79.))
    runs.append(dict(method='Y', seed=7, knn_top1=99.))  # no MAE seed 7
    diffs = bench.paired_differences(runs, ['MAE', 'X', 'Y'], ['knn_top1'])
    x = diffs['X']['knn_top1']
    assert x['mean'] == pytest.approx(2.0) and x['n'] == 3
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert x['ci'] == pytest.approx([2 - half, 2 + half], abs=1e-5)
    y = diffs['Y']['knn_top1']
    assert y == dict(mean=-1.0, ci=None, n=1, seeds=[1])
    assert 'MAE' not in diffs
    assert bench.format_diff(x) == '+2.0 [-0.5, +4.5]'


def test_component_differences_pair_each_part_with_its_base_method():
    runs = [dict(method=m, seed=s, knn_top1=v) for m, vals in (
        ('naive mixing', (70., 80.)), ('MixedAE w/o HomoCon', (72., 81.)),
        ('MixedAE', (71., 79.))) for s, v in enumerate(vals)]
    parts = bench.component_differences(
        runs, ['naive mixing', 'MixedAE w/o HomoCon', 'MixedAE'],
        ['knn_top1'])
    # the paper reading did not run: its comparison is left out
    assert list(parts) == ['homologous attention (bias)',
                           'HomoCon (on a projector)']
    bias = parts['homologous attention (bias)']
    assert (bias['method'], bias['baseline']) == ('MixedAE w/o HomoCon',
                                                  'naive mixing')
    assert bias['knn_top1']['mean'] == pytest.approx(1.5)
    homocon = parts['HomoCon (on a projector)']['knn_top1']
    assert homocon['mean'] == pytest.approx(-1.5)
    assert homocon['seeds'] == [0, 1]
    table = bench.markdown({}, dict(seeds=[0, 1], metrics=['knn_top1'],
                                    pretrain_images=64, epochs=1,
                                    batch_size=8, eval_train_images=60,
                                    eval_test_images=40, finetune_iters=1,
                                    finetune_batch_size=8),
                           runs=runs, parts=parts)
    assert ('| HomoCon (on a projector) | MixedAE − MixedAE w/o HomoCon '
            '| 0 1 | -1.5 [') in table


def test_study_resumes_from_its_cache_and_reports_from_it(tmp_path):
    require_fashion_mnist()
    out = tmp_path / 'study'
    args = ['--smoke', '--methods', 'MAE', 'naive mixing', '--no-floor',
            '--metrics', 'knn_top1', '--out-dir', str(out), '--data-root',
            DATA, '--pretrain-images', '64', '--eval-train-images', '60',
            '--eval-test-images', '40']
    first = bench.main(args)
    cached = sorted(p.name for p in (out / 'runs').iterdir())
    assert cached == ['mae_seed0.json', 'naive-mixing_seed0.json']
    assert (out / 'differences.png').stat().st_size > 0
    # another metric later: evaluated from the kept checkpoint, the
    # pre-training is not repeated
    more = bench.main([a if a != 'knn_top1' else 'linear_top1'
                       for a in args])
    for a, b in zip(first['runs'], more['runs']):
        assert b['pretrain_seconds'] == a['pretrain_seconds']
        assert b['knn_top1'] == a['knn_top1'] and 'linear_top1' in b
    # a cached result is what the next sitting uses: edit one, rerun
    path = out / 'runs' / 'naive-mixing_seed0.json'
    run = json.loads(path.read_text())
    run['knn_top1'] = 12.5
    path.write_text(json.dumps(run))
    ckpt = out / 'naive-mixing_seed0' / 'epoch_1.pth'
    ckpt.unlink()  # nothing is retrained: the checkpoint is not needed
    again = bench.main(args)
    assert not ckpt.exists()
    knn = {r['method']: r['knn_top1'] for r in again['runs']}
    assert knn['naive mixing'] == 12.5
    assert again['differences']['naive mixing']['knn_top1']['mean'] == \
        pytest.approx(12.5 - knn['MAE'])
    assert more['runs'][0] == again['runs'][0]  # MAE: the same record
    # --report trains nothing; a run of another budget is not reused
    report = bench.main(args[:-2] + ['--eval-test-images', '30',
                                     '--report'])
    assert report['runs'] == [] and report['missing'] == [
        'mae_seed0', 'naive-mixing_seed0']
