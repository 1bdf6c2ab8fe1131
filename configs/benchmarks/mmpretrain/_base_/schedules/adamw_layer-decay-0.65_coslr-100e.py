# MAE's fine-tuning schedule for ViT-B (mmpretrain's MAE benchmark config with
# its inherited swin AdamW schedule, flattened here): AdamW, base lr 5e-4 per
# 256 images (2e-3 for the global batch 1024 = 8 x 128), betas (0.9, 0.999),
# wd 0.05 (none on norms, biases, cls token, position embedding), layer-wise
# lr decay 0.65 through mmpretrain's LearningRateDecayOptimWrapperConstructor,
# 5 warm-up epochs then cosine to 1e-6, 100 epochs.
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW',
        lr=5e-4 * 1024 / 256,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999)),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=95,
        by_epoch=True,
        begin=5,
        end=100,
        eta_min=1e-6,
        convert_to_iter_based=True)
]

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# `--auto-scale-lr` rescales lr when the global batch is not 1024
auto_scale_lr = dict(base_batch_size=1024)
