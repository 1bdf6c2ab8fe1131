"""One encoder evaluated: k-NN and a linear probe on frozen features
(``mixedae.evaluation``, the code of the frozen-evaluation tool), a brief
end-to-end fine-tune with mmpretrain's ``ImageClassifier``, and the frozen
dense probes (:mod:`.dense`)."""
import copy
import os
import os.path as osp
import time
from typing import Sequence

import torch

from mixedae.evaluation import knn_classify, linear_probe, top1
from .data import ENCODER, IMG_SIZE, MEAN, NUM_CLASSES, STD, \
    build_encoder, extract
from .dense import dense_data, dense_probes
from .methods import ROOT

# the metrics one can ask for; either dense one computes all of DENSE
METRICS = ('knn_top1', 'linear_top1', 'finetune_top1', 'seg_miou',
           'discovery_fg_ari')
DENSE = ('seg_miou', 'seg_miou_items', 'discovery_fg_ari',
         'discovery_best_iou')


def finetune(vit_state: dict, seed: int, budget: dict, work_dir: str,
             data_root: str, quiet: bool = True) -> float:
    """Briefly fine-tune an mmpretrain ``ImageClassifier`` end to end from
    ``vit_state`` with the Runner; returns its test top-1 (%)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    os.makedirs(work_dir, exist_ok=True)
    ckpt = osp.join(work_dir, 'vit_init.pth')
    torch.save(dict(state_dict=vit_state), ckpt)
    iters, bs = budget['finetune_iters'], budget['finetune_batch_size']
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/default_runtime.py'))
    backbone = dict(copy.deepcopy(ENCODER), drop_path_rate=0.1,
                    init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    test_pipeline = [
        dict(type='Resize', scale=(IMG_SIZE, IMG_SIZE), backend='cv2',
             interpolation='bicubic'),
        dict(type='PackInputs')
    ]
    dataset = dict(type='FashionMNIST', data_root=data_root, download=False)
    cfg.merge_from_dict(dict(
        work_dir=work_dir,
        experiment_name=f'finetune_seed{seed}',
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(
                type='ClsDataPreprocessor', mean=[MEAN], std=[STD],
                to_rgb=False, num_classes=NUM_CLASSES),
            backbone=backbone,
            head=dict(
                type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=ENCODER['arch']['embed_dims'],
                loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                          mode='original'),
                init_cfg=dict(type='TruncNormal', layer='Linear',
                              std=2e-5))),
        train_dataloader=dict(
            batch_size=bs, num_workers=0, drop_last=True,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(
                dataset, test_mode=False,
                indices=budget.get('finetune_images'),
                pipeline=test_pipeline[:1] + [
                    dict(type='RandomFlip', prob=0.5),
                    dict(type='PackInputs')])),
        test_dataloader=dict(
            batch_size=256, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            dataset=dict(dataset, split='test', test_mode=True,
                         indices=budget['eval_test_images'],
                         pipeline=test_pipeline)),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        test_cfg=dict(),
        # MAE's fine-tuning recipe, shortened: AdamW with layer-wise lr
        # decay, no decay on norms, biases and embeddings
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                           weight_decay=0.05),
            constructor='LearningRateDecayOptimWrapperConstructor',
            paramwise_cfg=dict(
                layer_decay_rate=0.75,
                custom_keys={
                    '.ln': dict(decay_mult=0.0),
                    '.bias': dict(decay_mult=0.0),
                    '.cls_token': dict(decay_mult=0.0),
                    '.pos_embed': dict(decay_mult=0.0)
                })),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.01, by_epoch=False,
                 begin=0, end=max(1, iters // 10)),
            dict(type='CosineAnnealingLR', by_epoch=False,
                 begin=max(1, iters // 10), end=max(iters, 2), eta_min=0.)
        ],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters),
        randomness=dict(seed=seed, diff_rank_seed=True),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
    ))
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.default_hooks.checkpoint = None  # nothing to keep
    if quiet:
        cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return float(metrics['accuracy/top1'])


def evaluate(vit_state: dict, seed: int, budget: dict, data: dict,
             work_dir: str, data_root: str, quiet: bool,
             metrics: Sequence[str] = METRICS) -> dict:
    """k-NN, linear probe and fine-tune top-1 (%) and the dense probes of
    one encoder (those of them in ``metrics``), and the seconds they
    took."""
    start = time.perf_counter()
    res = {}
    if {'knn_top1', 'linear_top1'} & set(metrics):
        encoder = build_encoder(vit_state)
        (xtr, ytr), (xte, yte) = data['train'], data['test']
        ftr, fte = extract(encoder, xtr), extract(encoder, xte)
        if 'knn_top1' in metrics:
            res['knn_top1'] = top1(
                knn_classify(ftr, ytr, fte, num_classes=NUM_CLASSES), yte)
        if 'linear_top1' in metrics:
            res['linear_top1'] = top1(
                linear_probe(ftr, ytr, fte, epochs=budget['linear_epochs'],
                             seed=seed, num_classes=NUM_CLASSES), yte)
    if set(DENSE) & set(metrics):
        res.update(dense_probes(vit_state, dense_data(
            data_root, budget['dense_train_canvases'],
            budget['dense_val_canvases']), seed=seed))
    frozen = time.perf_counter()
    res['frozen_eval_seconds'] = frozen - start
    if 'finetune_top1' in metrics:
        res['finetune_top1'] = finetune(vit_state, seed, budget, work_dir,
                                        data_root, quiet)
        res['finetune_seconds'] = time.perf_counter() - frozen
    res['eval_seconds'] = time.perf_counter() - start
    return res
