"""The full-size classification benchmark configs, built with the real
registries: one training step of ViT-B/16 at 224 px on 2 synthetic images
that go through the config's own train pipeline (file loading, RandAugment,
...), data preprocessor and batch augments (Mixup/CutMix), then the config's
optimizer (layer-wise lr decay for fine-tuning, LARS on a frozen encoder
for the linear probe). ~1-2 s of ViT-B compute per config on 2 cores."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'configs/benchmarks/mmpretrain')
FINETUNE = 'vit-base-p16_mixedae-pre_8xb128-coslr-100e_in1k.py'
LINEAR = 'vit-base-p16_mixedae-pre_8xb2048-linear-coslr-90e_in1k.py'
TRANSFER = 'vit-base-p16_mixedae-pre_8xb32-coslr-100e_{}.py'
# the slides' transferability table: config name -> mmpretrain dataset
TRANSFER_SETS = {
    'aircraft': 'FGVCAircraft',
    'caltech101': 'Caltech101',
    'cars': 'StanfordCars',
    'cifar10': 'CIFAR10',
    'cifar100': 'CIFAR100',
    'dtd': 'DTD',
    'flowers102': 'Flowers102',
    'food101': 'Food101',
    'pets': 'OxfordIIITPet',
    'sun397': 'SUN397',
    'voc2007': 'VOC',
}
SMALL = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)


def _load(name):
    cfg = Config.fromfile(osp.join(BENCH, name))
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return cfg


def _build(cfg):
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    # no init_weights(): its Pretrained checkpoint is the '' placeholder
    return MODELS.build(cfg.model).train()


def _batch(cfg, tmp_path, labels):
    """2 random images through the config's own train pipeline."""
    rng = np.random.RandomState(0)
    pipeline = cfg.train_dataloader.dataset.pipeline
    samples = []
    for i, label in enumerate(labels):
        img = rng.randint(0, 256, (300, 400, 3), dtype=np.uint8)
        if pipeline[0]['type'] == 'LoadImageFromFile':
            path = str(tmp_path / f'{i}.jpg')
            cv2.imwrite(path, img)
            results = dict(img_path=path, gt_label=label)
        else:  # CIFAR: the dataset yields 32 px arrays
            results = dict(img=img[:32, :32], gt_label=label)
        samples.append(Compose(pipeline)(results))
    return pseudo_collate(samples)


def _loss_step(model, data, backward=True):
    data = model.data_preprocessor(data, training=True)
    assert data['inputs'].shape == (2, 3, 224, 224)
    with torch.set_grad_enabled(backward):
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss), losses
    if backward:
        loss.backward()
    return data


def _group(optim_wrapper, name):
    for group in optim_wrapper.optimizer.param_groups:
        if group.get('param_name') == name:
            return group
    raise KeyError(name)


@pytest.mark.parametrize('name', [FINETUNE, TRANSFER.format('cifar10')])
def test_finetune_step_with_mixup_and_layer_decay(name, tmp_path):
    cfg = _load(name)
    model = _build(cfg)
    data = _loss_step(model, _batch(cfg, tmp_path, labels=[0, 1]))
    # Mixup/CutMix ran: labels became (soft) score vectors
    assert data['data_samples'][0].gt_score.shape == (
        cfg.model.head.num_classes, )
    qkv = {i: model.backbone.layers[i].attn.qkv.weight for i in (0, 11)}
    for p in qkv.values():
        assert p.grad is not None and p.grad.abs().sum() > 0
        assert torch.isfinite(p.grad).all()

    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = cfg.optim_wrapper.optimizer.lr
    first = _group(optim_wrapper, 'backbone.layers.0.attn.qkv.weight')
    last = _group(optim_wrapper, 'backbone.layers.11.attn.qkv.weight')
    head = _group(optim_wrapper, 'head.fc.weight')
    # depth 0 = embeddings, blocks 1..12, head 13: scale 0.65^(13 - depth)
    assert first['lr'] == pytest.approx(lr * 0.65**12)
    assert last['lr'] == pytest.approx(lr * 0.65)
    assert head['lr'] == pytest.approx(lr)
    assert first['weight_decay'] == last['weight_decay'] == 0.05
    for no_decay in ('backbone.pos_embed', 'backbone.cls_token',
                     'backbone.layers.0.ln1.weight',
                     'backbone.layers.0.attn.qkv.bias', 'backbone.ln2.weight'):
        assert _group(optim_wrapper, no_decay)['weight_decay'] == 0.0

    # one real AdamW step: its first update is lr * sign(grad) per entry, so
    # the blocks move by their own (decayed) learning rates. Only these two
    # tensors keep their gradients (AdamW skips the others), which saves
    # a 86M-parameter update.
    for p in model.parameters():
        if all(p is not q for q in qkv.values()):
            p.grad = None
    before = {i: p.detach().clone() for i, p in qkv.items()}
    optim_wrapper.step()
    for i, group in ((0, first), (11, last)):
        step = (qkv[i].detach() - before[i]).abs().max().item()
        assert step == pytest.approx(group['lr'], rel=0.05), i


def test_linear_probe_step_trains_only_the_head(tmp_path):
    cfg = _load(LINEAR)
    model = _build(cfg)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    bn = model.neck.bn
    stats = bn.running_mean.clone()
    _loss_step(model, _batch(cfg, tmp_path, labels=[3, 7]))
    assert all(p.grad is None for p in model.backbone.parameters())
    head = model.head.layers.head.weight
    assert head.grad is not None and torch.isfinite(head.grad).all()
    assert head.grad.abs().sum() > 0
    assert not torch.equal(bn.running_mean, stats)  # BatchNorm neck trains

    # AMP needs a GPU; the optimizer it wraps is the same
    cfg.optim_wrapper.type = 'OptimWrapper'
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(optim_wrapper.optimizer).__name__ == 'LARS'
    # MAE's linear-probe lr, base 0.1 per 256 images, at the total batch of
    # the name's 8 GPUs; --auto-scale-lr keeps it at that batch
    total_batch = 8 * cfg.train_dataloader.batch_size
    assert '8xb2048' in LINEAR and total_batch == 16384
    for group in optim_wrapper.optimizer.param_groups:
        assert group['lr'] == pytest.approx(0.1 * total_batch / 256)
    assert cfg.auto_scale_lr.base_batch_size == total_batch
    before = head.detach().clone()
    frozen = model.backbone.layers[11].attn.qkv.weight.detach().clone()
    optim_wrapper.step()
    assert not torch.equal(head.detach(), before)
    assert torch.equal(model.backbone.layers[11].attn.qkv.weight, frozen)


def test_voc2007_multilabel_step(tmp_path):
    cfg = _load(TRANSFER.format('voc2007'))
    model = _build(cfg)
    assert not model.data_preprocessor.batch_augments  # no Mixup/CutMix
    # the forward/backward path is the fine-tuning one tested above; here
    # the multi-label targets and the sigmoid loss (forward only, to save
    # a ViT-B backward)
    data = _loss_step(
        model, _batch(cfg, tmp_path, labels=[[3, 7], [0]]), backward=False)
    score = data['data_samples'][0].gt_score
    assert score.shape == (20, ) and score[[3, 7]].tolist() == [1, 1]
    assert score.sum() == 2  # multi-hot, no smoothing

    # evaluation as VOC07 does it: the config's val pipeline and evaluator
    # leave out classes present only as 'difficult' objects. Class 3: an
    # image with only a difficult one, scored 0.95, above a plain positive
    # scored 0.9: AP 100 when it is left out, 50 if it counted as a
    # negative (without the 'gt_label_difficult' meta key the metric raises
    # a KeyError). Classes 0 and 5 have
    # one positive each scored first (AP 100); mmpretrain's mAP averages
    # all 20 classes, those without positives at 0: 300 / 20 (250 / 20).
    rng = np.random.RandomState(0)
    samples = []
    for i, (labels, difficult, scores) in enumerate([
            ([3], [], {3: .9}),
            ([5], [3], {3: .95, 5: .9}),
            ([0], [], {3: .5, 0: .9})]):
        path = str(tmp_path / f'val{i}.jpg')
        cv2.imwrite(path, rng.randint(0, 256, (300, 400, 3), np.uint8))
        packed = Compose(cfg.val_dataloader.dataset.pipeline)(dict(
            img_path=path, gt_label=labels, gt_label_difficult=difficult))
        pred = torch.full((20, ), .01)
        for c, score in scores.items():
            pred[c] = score
        samples.append(packed['data_samples'].set_pred_score(pred))
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.process(samples)
    metrics = evaluator.evaluate(len(samples))
    assert metrics['multi-label/mAP'] == pytest.approx(300 / 20)


@pytest.mark.parametrize('key', sorted(TRANSFER_SETS))
def test_transfer_config_sets_its_dataset(key):
    """Each transfer config names its own data (the shared base leaves the
    dataset type None, so an override that is missing cannot fall back to
    ImageNet), evaluates on a split it does not train on, sizes the head by
    the dataset's own class list and starts from the pre-trained encoder."""
    from mmpretrain.registry import DATASETS, MODELS
    cfg = Config.fromfile(osp.join(BENCH, TRANSFER.format(key)))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.type == TRANSFER_SETS[key], loader
        assert cfg[loader].dataset.data_root
    splits = [cfg[loader].dataset.split for loader in
              ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    assert splits[0] != splits[1] == splits[2], splits
    # mmpretrain 1.2's Flowers102 has no class list: 102, its name
    classes = len(DATASETS.get(TRANSFER_SETS[key]).METAINFO.get(
        'classes', range(102)))
    assert cfg.model.head.num_classes == classes
    assert cfg.data_preprocessor.num_classes == classes
    # without a checkpoint the encoder refuses to start (no silent training
    # from scratch); a 1-layer encoder is enough to see it
    init_default_scope('mmpretrain')
    backbone = MODELS.build(dict(cfg.model.backbone, arch=SMALL))
    with pytest.raises(FileNotFoundError,
                       match='set model.backbone.init_cfg.checkpoint'):
        backbone.init_weights()
