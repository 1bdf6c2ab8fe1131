# mmpretrain's MAE counterpart of the MixedAE CPU demo: the same tiny
# 1-channel ViT (192-dim, 6 layers, 3 heads, patch 4, 32 px, N = 64), the
# same 128-dim 2-layer decoder, data, optimiser and schedule, with MAE's 75%
# masking (the same 16 visible patches per image as MixedAE's r = 0.25), so
# the two compare like for like (benchmarks/fashion_mnist/).
_base_ = [
    '../mixedae/mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py'
]

model = dict(
    _delete_=True,
    type='MAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[72.94],  # Fashion-MNIST train statistics, 0-255
        std=[90.02],
        to_rgb=False),
    backbone=dict(
        type='MAEViT',
        arch=dict(
            embed_dims=192,
            num_layers=6,
            num_heads=3,
            feedforward_channels=768),
        img_size=32,
        patch_size=4,
        patch_cfg=dict(in_channels=1),
        mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=64,
        patch_size=4,
        in_chans=1,
        embed_dim=192,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        mlp_ratio=4.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=4,
        in_channels=1,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

# the mixing visualisation and the guards belong to MixedAE (the MAE
# baseline keeps its hooks as they were: mmpretrain's defaults); mmengine's
# default log processing (MAE logs every iteration). `_delete_` rather than
# `mixedae=None, ...`: mmengine's own Runner, which the Fashion-MNIST study
# builds, accepts None only for its own default hooks.
default_hooks = dict(
    _delete_=True,
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
custom_hooks = []
log_processor = dict(
    _delete_=True, type='LogProcessor', window_size=10, by_epoch=True)
