"""The Fashion-MNIST benchmark harness: its k-NN on cases with a known
answer, and one tiny end-to-end run (real data, real Runners) that writes
results.json and results.md."""
import json
import math

import pytest
import torch

from conftest import DATA, load_script, require_fashion_mnist

bench = load_script('benchmarks/fashion_mnist/run.py')


def test_knn_votes_by_cosine_similarity_with_temperature_weights():
    # two classes along two directions; the scale of a feature must not
    # matter (cosine), only its direction
    train = torch.tensor([[1., 0.], [10., 1.], [3., -.2], [0., 1.],
                          [.1, 5.], [-.2, 2.]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    test = torch.tensor([[100., 3.], [.05, 1.], [1., -.1], [-1., 30.]])
    pred = bench.knn_classify(train, labels, test, k=3, num_classes=2)
    assert pred.tolist() == [0, 1, 0, 1]

    # weighting: one near neighbour of class 0 outvotes two far ones of
    # class 1 at DINO's T = 0.07; a plain majority (huge T) does not
    train = torch.tensor([[1., 0.], [0., 1.], [.2, 1.]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1., .05]])
    assert bench.knn_classify(train, labels, test, k=3,
                              num_classes=2).tolist() == [0]
    assert bench.knn_classify(train, labels, test, k=3, temperature=1e6,
                              num_classes=2).tolist() == [1]
    with pytest.raises(ValueError, match='k=4'):
        bench.knn_classify(train, labels, test, k=4, num_classes=2)


def test_knn_chunks_match_one_pass():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 8, generator=g), torch.randn(50, 8,
                                                                generator=g)
    labels = torch.randint(0, 5, (300, ), generator=g)
    full = bench.knn_classify(train, labels, test, k=20, num_classes=5,
                              chunk_size=1000)
    chunked = bench.knn_classify(train, labels, test, k=20, num_classes=5,
                                 chunk_size=7)
    assert torch.equal(full, chunked)


def test_linear_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    feats = torch.randn(200, 16, generator=g) * .1 + 3 * torch.eye(16)[
        labels] + 50  # offset and scale removed by the standardisation
    pred = bench.linear_probe(feats[:150], labels[:150], feats[150:],
                              epochs=60, batch_size=50, lr=1e-2,
                              num_classes=4)
    assert bench.top1(pred, labels[150:]) == 100.


def test_harness_end_to_end_writes_json_and_markdown(tmp_path):
    require_fashion_mnist()
    out = tmp_path / 'bench'
    result = bench.main([
        '--smoke', '--methods', 'MixedAE', '--out-dir', str(out),
        '--data-root', DATA, '--pretrain-images', '64', '--eval-train-images',
        '100', '--eval-test-images', '50', '--finetune-iters', '2'
    ])
    saved = json.loads((out / 'results.json').read_text())
    assert saved['summary'] == json.loads(json.dumps(result['summary']))
    assert [(r['method'], r['seed']) for r in saved['runs']] == [
        ('random init', 0), ('MixedAE', 0)]
    # k-NN and the linear probe on the encoders' features beat chance (10%)
    # on the 50 test images by a margin: measured 34% (k-NN) and 28-30%
    # (linear) for both the random init and the 2-iteration MixedAE (a
    # random ViT's features already carry the images' classes). A constant
    # prediction scores at most 14% there (7 of 50, the largest class);
    # features shuffled across the images measured 6-8% (k-NN) and 10-12%
    # (linear). Fine-tuning 2 iterations stays at chance (6%): its learning
    # is tested in test_downstream_cls.py.
    for run in saved['runs']:
        for key in ('knn_top1', 'linear_top1'):
            assert run[key] >= 20, (run['method'], key, run[key])
        assert math.isfinite(run['finetune_top1'])
    mixed = saved['runs'][1]
    assert mixed['pretrain_iters'] == 2  # 64 images, batch 32, 1 epoch
    assert mixed['pretrain_seconds'] > 0 and math.isfinite(
        mixed['final_loss'])
    assert saved['runs'][0]['pretrain_seconds'] is None
    assert (out / 'mixedae_seed0' / 'epoch_1.pth').exists()
    summary = saved['summary']['MixedAE']
    assert summary['knn_top1']['n'] == 1 and summary['knn_top1']['std'] is None
    assert saved['settings']['eval_test_images'] == 50
    table = (out / 'results.md').read_text().splitlines()
    assert table[0].startswith('| method |') and 'k-NN' in table[0]
    rows = {line.split('|')[1].strip(): line for line in table[2:4]}
    assert set(rows) == {'random init', 'MixedAE'}
    knn = summary['knn_top1']['mean']
    assert f'{knn:.1f}' in rows['MixedAE']


def test_trivial_loss_is_the_norm_pix_loss_of_predicting_zero():
    require_fashion_mnist()
    module = load_script('benchmarks/fashion_mnist/trivial_loss.py')
    with torch.no_grad():
        out = module.main(['--num', '64', '--data-root', DATA])
    flat, near = out['flat_patches'], out['near_flat_patches']
    assert 0.1 < flat < 0.6  # black background, not every patch
    # a non-flat patch's normalised target has mean square 15/16 (unbiased
    # var over 16 pixels) times var / (var + 1e-6): at most 15/16, and
    # at least 0.999 of it once var >= 1e-3
    lower = 15 / 16 * (1 - flat - near) * 0.999
    assert lower < out['trivial_loss'] <= 15 / 16 * (1 - flat) + 1e-6
