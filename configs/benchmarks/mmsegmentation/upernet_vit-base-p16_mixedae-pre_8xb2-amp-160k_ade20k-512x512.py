# UperNet + ViT-B/16 initialised from a MixedAE encoder, ADE20K 512x512,
# 160k iterations at 8 GPUs x 2 images: the recipe of mmseg's
# `mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py` (AdamW 1e-4,
# wd 0.05, layer decay 0.65, 1.5k-iter warmup then poly, drop path 0.1,
# AMP, slide inference), with mmpretrain's plain VisionTransformer in place
# of mmseg's `MAE` backbone so the converted checkpoint loads with no key
# renaming, and mmseg's MultiLevelNeck (scales 4, 2, 1, 0.5) as the
# multi-level neck.
#
# Backbone checkpoint: the output of
#   python tools/model_converters/mixedae2vit.py PRETRAIN.pth OUT.pth
# given with `--cfg-options model.backbone.init_cfg.checkpoint=OUT.pth`.
# The 224-px position embedding is resized to 512 px on load.
_base_ = [
    'mmseg::_base_/models/upernet_mae.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(
    imports=['mmpretrain.models', 'projects.dense_vit.dense_vit'],
    allow_failed_imports=False)

pretrained = 'pretrain/mixedae_vit-base-p16_backbone.pth'  # converted ckpt
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=512,
        patch_size=16,
        out_indices=(3, 5, 7, 11),
        out_type='featmap',  # (B, 768, 32, 32) per index, cls token dropped
        drop_path_rate=0.1,
        final_norm=True,  # ln1 on the last output; keeps every ckpt key used
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='MultiLevelNeck',
        in_channels=[768, 768, 768, 768],
        out_channels=768,
        scales=[4, 2, 1, 0.5]),  # strides 4, 8, 16, 32
    decode_head=dict(
        in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# mmseg's LayerDecayOptimizerConstructor picks its rule by the backbone's
# class name (BEiT / MAE) and raises NotImplementedError for mmpretrain's
# VisionTransformer; this constructor (projects/dense_vit) applies the same
# decay to `backbone.layers.{i}` through the backbone's get_layer_depth.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
