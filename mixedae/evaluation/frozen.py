"""k-NN (DINO's protocol) and a linear probe on frozen features."""
import math
from typing import Optional

import torch
import torch.nn.functional as F


def _num_classes(labels: torch.Tensor, num_classes: Optional[int]) -> int:
    return int(labels.max()) + 1 if num_classes is None else num_classes


def knn_classify(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_feats: torch.Tensor,
                 k: int = 20,
                 temperature: float = 0.07,
                 num_classes: Optional[int] = None,
                 chunk_size: int = 1024) -> torch.Tensor:
    """Weighted k-NN on cosine similarity (DINO's evaluation).

    Each test sample takes its k most similar train samples; each votes for
    its label with weight ``exp(similarity / temperature)``.

    Args:
        num_classes (int, optional): defaults to the largest train label
            + 1.

    Returns:
        Tensor: (M,) predicted labels of the M test samples.
    """
    if not 1 <= k <= len(train_feats):
        raise ValueError(f'k={k} must be in [1, {len(train_feats)}] (the '
                         'number of train samples).')
    num_classes = _num_classes(train_labels, num_classes)
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    preds = []
    for start in range(0, len(test), chunk_size):  # bounds the (m, N) matrix
        sim = test[start:start + chunk_size] @ train.T  # (m, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (m, k)
        votes = torch.zeros(len(sim), num_classes, device=sim.device)
        votes.scatter_add_(1, train_labels[top_idx],
                           (top_sim / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def linear_probe(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_feats: torch.Tensor,
                 epochs: int = 100,
                 batch_size: int = 256,
                 lr: float = 1e-3,
                 weight_decay: float = 1e-4,
                 seed: int = 0,
                 num_classes: Optional[int] = None) -> torch.Tensor:
    """Logistic regression on frozen features, standardised by the train
    mean and std (a BatchNorm without affine, as MAE's probe); AdamW,
    cosine lr.

    Args:
        num_classes (int, optional): defaults to the largest train label
            + 1.

    Returns:
        Tensor: (M,) predicted labels of the test samples.
    """
    num_classes = _num_classes(train_labels, num_classes)
    train_feats, test_feats = train_feats.float(), test_feats.float()
    mean = train_feats.mean(dim=0)
    std = train_feats.std(dim=0) + 1e-6
    x = (train_feats - mean) / std
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    head.to(x.device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr,
                            weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            idx = idx.to(x.device)
            loss = F.cross_entropy(head(x[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return head((test_feats - mean) / std).argmax(dim=1)


def top1(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in %."""
    return 100. * (preds.cpu() == labels.cpu()).float().mean().item()
