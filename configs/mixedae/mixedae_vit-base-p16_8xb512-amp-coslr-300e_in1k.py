# MixedAE ViT-B/16, 300 epochs on ImageNet-1k, MAE's recipe: AdamW,
# lr 1.5e-4 x 4096/256, betas (0.9, 0.95), wd 0.05, 40 warm-up epochs then
# cosine, AMP, global batch 8 x 512 = 4096.
#
# Memory (benchmarks/memory_estimate.py, per GPU, AMP): 43.5 GiB at 512
# images per GPU (weights + AdamW 1.7, activations 35.3; MAE's config: 44.6),
# homologous attention keeping no attention map for backward.
_base_ = [
    '../_base_/models/mixedae_vit-base-p16.py',
    '../_base_/datasets/imagenet_bs512_mixedae.py',
    '../_base_/mixedae_runtime.py',  # mmpretrain's runtime + the guards
]

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW',
        lr=1.5e-4 * 4096 / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'segment_embed': dict(decay_mult=0.),
            'homo_bias': dict(decay_mult=0.),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.0001,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=260,
        by_epoch=True,
        begin=40,
        end=300,
        convert_to_iter_based=True)
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))

randomness = dict(seed=0, diff_rank_seed=True)
resume = True  # auto resume from the work dir's last checkpoint
auto_scale_lr = dict(base_batch_size=4096)
