"""The Fashion-MNIST study (benchmarks/fashion_mnist/run.py, the package
fmnist_study): paired differences with Student-t intervals, the per-run
result files it resumes and reports from, the precision it keeps (as
trained and from content alone), pre-trainings that resume from their last
epoch checkpoint, and the frozen dense probes."""
import json
import math
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook

from conftest import DATA, ROOT, require_fashion_mnist

sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'fashion_mnist'))
from fmnist_study import cli, dense, pretrain, report, stats  # noqa: E402


def test_paired_differences_use_the_same_seed_and_a_t_interval():
    runs = [dict(method='MAE', seed=s, knn_top1=v)
            for s, v in ((0, 70.), (1, 80.), (2, 75.))]
    # differences against the same seed: +1, +2, +3 (the raw means differ
    # by 2 too, but the seeds' spread of 5 points must not enter the CI)
    runs += [dict(method='X', seed=s, knn_top1=v)
             for s, v in ((0, 71.), (1, 82.), (2, 78.))]
    runs.append(dict(method='Y', seed=1, knn_top1=79.))
    runs.append(dict(method='Y', seed=7, knn_top1=99.))  # no MAE seed 7
    diffs = stats.paired_differences(runs, ['MAE', 'X', 'Y'], ['knn_top1'])
    x = diffs['X']['knn_top1']
    assert x['mean'] == pytest.approx(2.0) and x['n'] == 3
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert x['ci'] == pytest.approx([2 - half, 2 + half], abs=1e-5)
    y = diffs['Y']['knn_top1']
    assert y == dict(mean=-1.0, ci=None, n=1, seeds=[1], values=[-1.0])
    assert 'MAE' not in diffs
    assert report.format_diff(x) == '+2.0 [-0.5, +4.5]'
    assert report.format_per_seed(x) == '+1.0 / +2.0 / +3.0'


def test_component_differences_pair_each_part_with_its_base_method():
    # seg. mIoU 10 points below k-NN, +1 for feature HomoCon on seed 1
    runs = [dict(method=m, seed=s, knn_top1=v, seg_miou=v - 10 + (
        m == 'MixedAE with feature HomoCon' and s == 1)) for m, vals in (
        ('naive mixing', (70., 80.)), ('MixedAE', (72., 81.)),
        ('MixedAE with feature HomoCon', (71., 79.)))
        for s, v in enumerate(vals)]
    methods = ['naive mixing', 'MixedAE', 'MixedAE with feature HomoCon']
    parts = stats.component_differences(runs, methods,
                                        ['knn_top1', 'seg_miou'])
    # the paper reading and the others did not run: left out
    recognition = ('homologous attention + recognition loss for the '
                   'segment embedding')
    assert list(parts) == [recognition,
                           'HomoCon on the features (on a projector)']
    bias = parts[recognition]
    assert (bias['method'], bias['baseline']) == ('MixedAE', 'naive mixing')
    assert bias['knn_top1']['mean'] == pytest.approx(1.5)
    homocon = parts['HomoCon on the features (on a projector)']['knn_top1']
    assert homocon['mean'] == pytest.approx(-1.5)
    assert homocon['seeds'] == [0, 1]
    summary = stats.summarise(runs, methods, ['knn_top1', 'seg_miou'])
    settings = dict(seeds=[0, 1], metrics=['knn_top1'], pretrain_images=64,
                    epochs=1, batch_size=8, eval_train_images=60,
                    eval_test_images=40, finetune_iters=1,
                    finetune_batch_size=8)
    table = report.markdown(summary, settings, runs=runs, parts=parts)
    assert ('| HomoCon on the features (on a projector) | MixedAE with '
            'feature HomoCon − MixedAE | 0 1 | -1.5 [') in table
    # and each seed's difference (79 - 81 on seed 1), in seed order
    assert ('| HomoCon on the features (on a projector) | MixedAE with '
            'feature HomoCon − MixedAE | 0 1 | -1.0 / -2.0 |') in table
    # the dense probes get both too
    assert ('| HomoCon on the features (on a projector) | MixedAE with '
            'feature HomoCon − MixedAE | 0 1 | -1.0 / -1.0 |') in table


SMOKE = ['--smoke', '--no-floor', '--data-root', DATA, '--pretrain-images',
         '64', '--eval-train-images', '60', '--eval-test-images', '40',
         '--dense-train-canvases', '8', '--dense-val-canvases', '6']


@pytest.fixture(scope='module')
def smoke_study(tmp_path_factory):
    """MAE, the ground-truth prior and the default (no cue): 2 iterations
    of 32 images each, k-NN and the dense probes."""
    require_fashion_mnist()
    tmp = tmp_path_factory.mktemp('study')
    args = SMOKE + ['--methods', 'MAE', 'MixedAE (ground-truth prior)',
                    'MixedAE',
                    '--metrics', 'knn_top1', 'seg_miou', '--out-dir',
                    str(tmp / 'work'), '--results-dir', str(tmp / 'results')]
    return tmp, args, cli.main(args)


def test_each_run_is_a_file_with_metrics_precisions_and_curves(smoke_study):
    tmp, _, result = smoke_study
    names = sorted(p.name for p in (tmp / 'results').iterdir())
    assert names == ['mae_seed0.json',
                     'mixedae--ground-truth-prior-_seed0.json',
                     'mixedae_seed0.json']
    runs = {r['method']: r for r in result['runs']}
    stored = json.loads((tmp / 'results' / 'mixedae_seed0.json').read_text())
    assert stored == json.loads(json.dumps(runs['MixedAE']))
    for run in runs.values():
        assert 0 <= run['knn_top1'] <= 100
        for key in report.DENSE:
            assert math.isfinite(run[key]), key
        assert run['pretrain_iters'] == 2 and run['pretrain_seconds'] > 0
        assert [c['step'] for c in run['curves']] == [2]  # logged once
    assert runs['MAE'].get('recognition') is None
    rec = runs['MixedAE (ground-truth prior)']['recognition']
    assert rec['layers'] == list(range(6)) and rec['images'] == 512
    assert 0.2 < rec['fg_share'] < 0.9  # Fashion-MNIST's black background
    # two iterations in, the homologous bias (1.0 at init) still decides:
    # as trained nearly every kept key is the own source's, from content
    # alone about chance (0.25)
    assert min(rec['as_trained']) > 0.6 and max(rec['content']) < 0.4
    none = runs['MixedAE']['recognition']
    assert none['as_trained'] == none['content']  # nothing to remove
    curve = runs['MixedAE']['curves'][0]
    assert {'homo_prec_l5', 'homo_prec_content_l5', 'loss_recog',
            'homo_prec_content_fg_l5', 'loss_rec'} <= set(curve)
    table = (tmp / 'work' / 'results.md').read_text()
    assert '| MixedAE | as trained |' in table
    assert '|  | content only |' in table
    assert 'seg. mIoU, 11 classes (%)' in table


def test_study_resumes_from_its_files_and_reports_from_them(smoke_study):
    tmp, args, first = smoke_study
    # another metric later: evaluated from the kept checkpoint, the
    # pre-training is not repeated
    more = cli.main([a if a != 'seg_miou' else 'linear_top1' for a in args])
    for a, b in zip(first['runs'], more['runs']):
        assert b['pretrain_seconds'] == a['pretrain_seconds']
        assert b['knn_top1'] == a['knn_top1'] and 'linear_top1' in b
    # a stored result is what the next sitting uses: edit one, rerun
    path = tmp / 'results' / 'mae_seed0.json'
    run = json.loads(path.read_text())
    run['knn_top1'] = 12.5
    path.write_text(json.dumps(run))
    ckpt = tmp / 'work' / 'mae_seed0' / 'epoch_1.pth'
    ckpt.unlink()  # nothing is retrained: the checkpoint is not needed
    again = cli.main(args)
    assert not ckpt.exists()
    knn = {r['method']: r['knn_top1'] for r in again['runs']}
    assert knn['MAE'] == 12.5
    assert again['differences']['MixedAE']['knn_top1']['mean'] == \
        pytest.approx(knn['MixedAE'] - 12.5)
    # --report trains nothing; a run of another budget is not reused
    assert args.count('40') == 1  # --eval-test-images
    out = cli.main([a if a != '40' else '30' for a in args] + ['--report'])
    assert out['runs'] == [] and out['missing'] == [
        'mae_seed0', 'mixedae--ground-truth-prior-_seed0', 'mixedae_seed0']


class _Interrupt(Hook):
    """Stops a run in its second epoch, as a crash would."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.epoch == 1 and batch_idx == 1:
            raise KeyboardInterrupt('stopped in epoch 2')


def test_an_interrupted_pretraining_resumes_from_its_last_epoch(tmp_path):
    require_fashion_mnist()
    import mixedae  # noqa: F401
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    budget = dict(cli.PRESETS['smoke'], pretrain_images=64, epochs=2)
    work = str(tmp_path / 'run')
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain('MixedAE', 0, budget, work, DATA,
                          hooks=[_Interrupt()])
    assert osp.exists(osp.join(work, 'epoch_1.pth'))
    out = pretrain.pretrain('MixedAE', 0, budget, work, DATA)
    assert out['resumed_from'] == 'epoch_1.pth'
    assert osp.exists(out['checkpoint'])
    # the curves of both sittings, one record per logged step; the time
    # of both (the first sitting's finished epoch included)
    assert [c['step'] for c in out['curves']] == [2, 4]
    assert out['seconds'] > 0
    # without a checkpoint it starts again
    fresh = pretrain.pretrain('MixedAE', 0, budget, str(tmp_path / 'new'),
                              DATA)
    assert fresh['resumed_from'] is None


def test_kmeans_and_fg_ari_recover_separated_objects():
    g = torch.Generator().manual_seed(0)
    # 2 images x 12 points: 3 tight clusters in 8 dims each
    centres = F.normalize(torch.randn(2, 3, 8, generator=g), dim=-1)
    truth = torch.arange(12).repeat(2, 1) % 3  # (2, 12)
    x = centres[torch.arange(2)[:, None], truth] + \
        0.01 * torch.randn(2, 12, 8, generator=g)
    clusters = dense.kmeans(x, 3)
    instances = truth + 1  # 1..3, no background
    assert dense.fg_ari(instances, clusters) == pytest.approx(
        torch.ones(2, dtype=torch.double))
    # the labels' names do not matter, the partition does
    assert dense.fg_ari(instances, (clusters + 1) % 3).min() > 0.999
    # everything in one cluster: no better than chance
    assert dense.fg_ari(instances, torch.zeros_like(clusters)).abs().max() \
        < 1e-9
    # background pixels (0) are ignored
    with_bg = torch.cat((torch.zeros(2, 5, dtype=torch.long), instances), 1)
    noisy = torch.cat((torch.randint(0, 3, (2, 5), generator=g), clusters), 1)
    assert dense.fg_ari(with_bg, noisy).min() > 0.999


def test_linear_segmentation_probe_and_miou():
    pred = torch.tensor([[0, 1], [1, 2]])
    target = torch.tensor([[0, 1], [2, 2]])
    iou = dense.miou(pred, target, 3)
    assert iou.tolist() == pytest.approx([1., 1 / 2, 1 / 2])
    g = torch.Generator().manual_seed(0)
    sem = torch.randint(0, dense.NUM_SEG_CLASSES, (40, 4, 4), generator=g)
    sem = sem.repeat_interleave(4, 1).repeat_interleave(4, 2)  # 16 px
    onehot = F.one_hot(sem[:, ::4, ::4], 11).float()  # (40, 4, 4, 11)
    good = dense.linear_segmentation(onehot[:30], sem[:30], onehot[30:],
                                     sem[30:], epochs=30, batch_size=10,
                                     lr=0.1)
    noise = torch.randn(40, 4, 4, 11, generator=g)
    bad = dense.linear_segmentation(noise[:30], sem[:30], noise[30:],
                                    sem[30:], epochs=30, batch_size=10,
                                    lr=0.1)
    # patch features that name the class: most pixels right (the
    # upsampling blurs the patch borders); noise: about chance (1/11)
    assert good['seg_miou'] > 50 and bad['seg_miou'] < 20


def test_budgets_side_by_side_from_the_stored_runs(tmp_path):
    """Two budgets of stored runs (written here in the study's format):
    the table pairs every method with MAE at each budget, and the plot is
    drawn; a run stored under another budget's key is not used."""
    from fmnist_study.store import budget_name, run_key, run_path, save_run
    knn = {3: dict(MAE=(70., 72.), MixedAE=(71., 74.)),
           12: dict(MAE=(75., 76.), MixedAE=(78., 80.))}
    for epochs, methods in knn.items():
        budget = dict(cli.PRESETS['study'], epochs=epochs,
                      finetune_images=None)
        folder = tmp_path / budget_name(budget)
        for method, values in methods.items():
            for seed, value in enumerate(values):
                save_run(run_path(str(folder), method, seed),
                         dict(method=method, seed=seed, knn_top1=value,
                              key=run_key(method, budget)))
    stray = dict(method='MAE', seed=2, knn_top1=0., key={'epochs': 99})
    save_run(run_path(str(tmp_path / '12ep'), 'MAE', 2), stray)
    out = cli.main(['--study', '--report', '--budgets', '3', '12',
                    '--methods', 'MAE', 'MixedAE', '--seeds', '0', '1', '2',
                    '--results-dir', str(tmp_path), '--out-dir',
                    str(tmp_path / 'work')])
    rows = {line.split('|')[1].strip(): line
            for line in out['table'].splitlines()[2:]}
    # MixedAE - MAE: +1, +2 at 3 epochs; +3, +4 at 12 (t(0.975, 1) = 12.7)
    assert rows['MixedAE'] == (
        '| MixedAE | k-NN top-1 (%) | 72.5 ± 2.1 | 79.0 ± 1.4 | '
        '+1.5 [-4.9, +7.9] | +3.5 [-2.9, +9.9] |')
    assert rows['MAE'] == ('| MAE | k-NN top-1 (%) | 71.0 ± 1.4 | '
                           '75.5 ± 0.7 | – | – |')
    assert out['points']['MAE'][12]['knn_top1']['n'] == 2  # not seed 2
    assert (tmp_path / 'work' / 'budgets.png').stat().st_size > 0


def test_budget_seeds_names_each_methods_seeds_where_they_differ():
    """The plot title names the seeds behind each budget's points: one
    list where every method holds the same seeds, each method's own where
    they differ (a method is never credited with a seed it lacks)."""
    def runs(**held):
        return [dict(method=m, seed=s) for m, seeds in held.items()
                for s in seeds]
    by_budget = {12: runs(MAE=[0, 1, 2], naive=[1, 0]),
                 3: runs(MAE=[0, 1, 2], naive=[2, 1, 0])}
    assert report.budget_seeds(by_budget, ['MAE', 'naive', 'absent']) == (
        '3 ep: 0 1 2; 12 ep: MAE 0 1 2, naive 0 1')
