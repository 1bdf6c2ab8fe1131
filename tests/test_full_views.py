"""MixedAE-Full: the demo config with V = 2 mixed views per group, trained
for a few iterations by mmengine's Runner on Fashion-MNIST. The
reconstruction loss falls, every source is decoded once per view from the
patches that view gives it, and ``reconstruct`` returns both views' mixed
images (view 1 the cyclic shift of view 0's mask) and every (source, view)
reconstruction."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mixedae.utils.mixing import patchify

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the demo plus HomoCon on the features: every loss term, over 2 views
FEATURE_HOMOCON = osp.join(
    ROOT, 'configs/mixedae/mixedae-feature-homocon_vit-tiny-p4_1xb128-'
    'coslr-3e_fashion-mnist-32px.py')
DATA = osp.join(ROOT, 'data/fashion_mnist')
V, G, N, K, P = 2, 4, 64, 16, 16  # views, group, patches, K = N / G, 4x4x1
BATCH, ITERS = 16, 8


def full_cfg(work_dir):
    """The demo config with HomoCon (192-dim, 6 layers) with V = 2, shrunk
    to 8 iterations of 16 images at a constant lr, logging every
    iteration's own values."""
    cfg = Config.fromfile(FEATURE_HOMOCON)
    cfg.work_dir = str(work_dir)
    cfg.model.backbone.num_views = V
    cfg.train_dataloader.dataset.data_root = DATA
    cfg.train_dataloader.dataset.indices = BATCH * ITERS
    cfg.train_dataloader.batch_size = BATCH
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = []  # MixedAEHook is a guard, in default_hooks
    return cfg


def _reconstruct(model, inputs):
    """``model.reconstruct`` with masks from a fixed seed (the training
    generator untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return model.reconstruct(inputs)


class _Probe(Hook):
    """Records what the decoder and the head receive at every iteration,
    and the reconstructions of one batch before the first step."""

    priority = 'LOWEST'

    def __init__(self):
        self.steps = []

    def before_train(self, runner):
        model = runner.model
        data = default_collate(
            [runner.train_dataloader.dataset[i] for i in range(8)])
        self.inputs = model.data_preprocessor(data)['inputs']
        model.eval()
        self.before = _reconstruct(model, self.inputs)
        model.train()
        neck, head = model.neck, model.head
        unmix, loss = neck.unmix, head.loss

        def recording_unmix(x, masks, group_size):
            out = unmix(x, masks, group_size)
            # positions that carry an encoder token, not the mask token
            own = (out[:, 1:] != neck.mask_token).any(-1)
            self.steps.append(
                dict(masks=masks.clone(), own=own, latent=tuple(x.shape)))
            return out

        def recording_loss(pred, imgs, *args, **kwargs):
            self.steps[-1].update(pred=tuple(pred.shape), imgs=len(imgs))
            return loss(pred, imgs, *args, **kwargs)

        neck.unmix, head.loss = recording_unmix, recording_loss


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    if not osp.exists(osp.join(DATA, 'train-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')
    work_dir = tmp_path_factory.mktemp('full_views')
    runner = Runner.from_cfg(full_cfg(work_dir))
    probe = _Probe()
    runner.register_hook(probe)
    runner.train()
    log = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))[0]
    records = [json.loads(line) for line in open(log)]
    return runner.model, probe, [r for r in records if 'loss_rec' in r]


def test_loss_falls_over_the_run(trained):
    _, _, records = trained
    assert [r['iter'] for r in records] == list(range(1, ITERS + 1))
    losses = [r['loss_rec'] for r in records]
    # measured 3.06, 3.52, 1.48, 0.92, 0.87, 0.92, 0.95, 0.87: the decoder
    # leaves its random-init outputs (norm-pix targets have a mean square
    # below 1) within 4 steps; a run whose steps do not reach the model
    # stays near 3
    assert max(losses[-3:]) < 0.5 * losses[0], losses
    for r in records:
        assert r['loss_homocon'] > 0 and r['loss_recog'] > 0
        assert 'homo_prec' in r


def test_every_source_is_decoded_once_per_view(trained):
    _, probe, _ = trained
    assert len(probe.steps) == ITERS
    Q = BATCH // G
    for step in probe.steps:
        masks = step['masks']
        assert masks.shape == (Q, V, N)
        assert torch.equal(masks[:, 1], (masks[:, 0] + 1) % G)
        # the encoder ran on Q * V mixed images, the decoder and the loss on
        # B * V rows: row (q * G + s) * V + v is source s decoded from view
        # v, holding its K tokens of that view and mask tokens elsewhere
        assert step['latent'] == (Q * V, 1 + N, 192)
        assert step['pred'] == (BATCH * V, N, P) and step['imgs'] == BATCH
        own = step['own'].view(Q, G, V, N)
        slot = torch.arange(G).view(1, G, 1, 1)
        assert torch.equal(own, masks.unsqueeze(1) == slot)
        assert (own.sum(-1) == K).all()
        # so the two views give each source 2K different patches
        assert not (own[:, :, 0] & own[:, :, 1]).any()


def test_reconstruct_returns_both_views(trained):
    model, probe, _ = trained
    x = probe.inputs  # (8, 1, 32, 32): Q = 2 groups
    model.eval()
    out = _reconstruct(model, x)
    Q = len(x) // G
    masks = out['masks']
    assert masks.shape == (Q, V, N)
    assert torch.equal(masks[:, 1], (masks[:, 0] + 1) % G)
    assert out['mixed'].shape == (Q * V, 1, 32, 32)
    assert out['recon'].shape == (len(x) * V, 1, 32, 32)
    sources = patchify(x, 4).view(Q, G, N, P)
    # mixed image q * V + v: patch j from source (M[q, 0, j] + v) mod G
    mixed = patchify(out['mixed'], 4).view(Q, V, N, P)
    for v in range(V):
        slot = (masks[:, 0] + v) % G  # (Q, N)
        expected = sources.gather(
            1, slot.view(Q, 1, N, 1).expand(-1, -1, -1, P)).squeeze(1)
        assert torch.equal(mixed[:, v], expected), v
    # reconstruction b * V + v: source b's own patches of view v pasted
    # back exactly, the other 3K predicted
    recon = patchify(out['recon'], 4).view(Q, G, V, N, P)
    own = masks.unsqueeze(1) == torch.arange(G).view(1, G, 1, 1)
    target = sources.unsqueeze(2).expand(-1, -1, V, -1, -1)
    assert torch.equal(recon[own], target[own])
    hidden = ~own
    assert (recon[hidden] != target[hidden]).any(-1).all()  # not copies
    # the predicted patches come from the trained model: their error fell
    # from the random init's (measured mean square 0.87 -> 0.28, in the
    # preprocessed inputs' units)
    before = patchify(probe.before['recon'], 4).view(Q, G, V, N, P)
    assert torch.equal(probe.before['masks'], masks)
    err_before = (before - target)[hidden].pow(2).mean()
    err_after = (recon - target)[hidden].pow(2).mean()
    assert err_after < 0.5 * err_before, (err_before, err_after)
