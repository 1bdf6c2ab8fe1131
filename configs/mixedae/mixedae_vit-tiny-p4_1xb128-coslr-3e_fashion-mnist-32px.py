# The CPU demo (`make demo`): a small MixedAE on Fashion-MNIST train
# (60k real 28x28 images, no labels), resized to 32 px, patch 4 (N = 64),
# r = 0.25 (G = 4, K = 16); the default recipe: no source cue in the
# forward pass (no segment embedding, no homologous bias), the attention
# recognition loss on every homologous-attention layer, no HomoCon on the
# features (with it: mixedae-feature-homocon_*;
# docs/homologous_recognition.md).
# Leaves the log, the checkpoints and, per group, the sources, the mixed
# image and each source's reconstruction in work_dirs/.../vis/.
_base_ = ['../_base_/mixedae_runtime.py']  # mmpretrain's + the guards

model = dict(
    type='MixedAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[72.94],  # Fashion-MNIST train statistics, 0-255
        std=[90.02],
        to_rgb=False),
    backbone=dict(
        type='MixedAEViT',
        arch=dict(
            embed_dims=192,
            num_layers=6,
            num_heads=3,
            feedforward_channels=768),
        img_size=32,
        patch_size=4,
        patch_cfg=dict(in_channels=1),
        mix_ratio=0.25,
        num_views=1,
        segment_embed=None,
        homo_bias=None,
        recognition_weight=0.1,
        homo_layers='all',
        homo_topk=None),
    neck=dict(
        type='MixedAEPretrainDecoder',
        num_patches=64,
        patch_size=4,
        in_chans=1,
        embed_dim=192,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        mlp_ratio=4.),
    head=dict(
        type='MixedAEPretrainHead',
        norm_pix=True,
        patch_size=4,
        in_channels=1,
        loss=dict(type='PixelReconstructionLoss', criterion='L2'),
        homocon_loss=None),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

train_pipeline = [
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.5, 1.0),
        backend='cv2',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='FashionMNIST',
        data_root='data/fashion_mnist',
        test_mode=False,
        pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
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
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=1,
        end=3,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3)

# Checkpoints every epoch (mmengine's epoch loop restarts an interrupted
# epoch, so epoch checkpoints are the exact resume points); with
# RNGStateHook, `--resume` continues as if never stopped.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
# the guards (MixedAEHook, RNGStateHook, ResumeConfigCheckHook,
# DivergenceHook) are in `default_hooks` (../_base_/mixedae_runtime.py)
custom_hooks = [
    dict(type='MixingVisualizationHook', num_images=16, interval=1, zoom=4),
    dict(type='ThroughputHook'),  # img_per_sec in the log
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=True)
