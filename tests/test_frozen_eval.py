"""The frozen-feature evaluation shared by the evaluation tool and the
Fashion-MNIST study (``mixedae.evaluation``): k-NN in DINO's protocol and
the linear probe, on cases with a known answer."""
import pytest
import torch

from mixedae.evaluation import knn_classify, linear_probe, top1


def test_knn_votes_by_cosine_similarity_with_temperature_weights():
    # two classes along two directions; the scale of a feature must not
    # matter (cosine), only its direction
    train = torch.tensor([[1., 0.], [10., 1.], [3., -.2], [0., 1.],
                          [.1, 5.], [-.2, 2.]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    test = torch.tensor([[100., 3.], [.05, 1.], [1., -.1], [-1., 30.]])
    pred = knn_classify(train, labels, test, k=3, num_classes=2)
    assert pred.tolist() == [0, 1, 0, 1]
    # the number of classes defaults to the largest train label + 1
    assert knn_classify(train, labels, test, k=3).tolist() == [0, 1, 0, 1]

    # weighting: one near neighbour of class 0 outvotes two far ones of
    # class 1 at DINO's T = 0.07; a plain majority (huge T) does not
    train = torch.tensor([[1., 0.], [0., 1.], [.2, 1.]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1., .05]])
    assert knn_classify(train, labels, test, k=3,
                        num_classes=2).tolist() == [0]
    assert knn_classify(train, labels, test, k=3, temperature=1e6,
                        num_classes=2).tolist() == [1]
    with pytest.raises(ValueError, match='k=4'):
        knn_classify(train, labels, test, k=4, num_classes=2)


def test_knn_chunks_match_one_pass():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 8, generator=g), torch.randn(50, 8,
                                                                generator=g)
    labels = torch.randint(0, 5, (300, ), generator=g)
    full = knn_classify(train, labels, test, k=20, num_classes=5,
                        chunk_size=1000)
    chunked = knn_classify(train, labels, test, k=20, num_classes=5,
                           chunk_size=7)
    assert torch.equal(full, chunked)


def test_linear_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    feats = torch.randn(200, 16, generator=g) * .1 + 3 * torch.eye(16)[
        labels] + 50  # offset and scale removed by the standardisation
    pred = linear_probe(feats[:150], labels[:150], feats[150:], epochs=60,
                        batch_size=50, lr=1e-2, num_classes=4)
    assert top1(pred, labels[150:]) == 100.
    # shuffled labels cannot be learned: chance on the held-out part
    shuffled = labels[torch.randperm(200, generator=g)]
    pred = linear_probe(feats[:150], shuffled[:150], feats[150:], epochs=60,
                        batch_size=50, lr=1e-2, num_classes=4)
    assert top1(pred, shuffled[150:]) < 60.
