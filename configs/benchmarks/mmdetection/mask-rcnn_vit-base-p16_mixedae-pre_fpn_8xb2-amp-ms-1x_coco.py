# Mask R-CNN + ViT-B/16 initialised from a MixedAE encoder, COCO, 1x
# schedule (12 epochs) at 8 GPUs x 2 images, multi-scale training (shorter
# side 480-800, longer <= 1333), AMP, layer-wise lr decay 0.75.
#
# The slides give no detection recipe; this is the Mask R-CNN FPN 1x
# multi-scale protocol of the iBOT/CAE/BEiT-style ViT benchmarks (our
# choice of lr / decay / drop path). A ViTDet-style LSJ 1024 x 100e schedule
# is not used: with global attention in all 12 layers it costs several times
# more, for every pre-training checkpoint compared.
#
# Plain ViT -> multi-scale: mmpretrain's VisionTransformer gives one
# stride-16 map (last layer); SimpleFeaturePyramid (projects/dense_vit, the
# ViTDet simple feature pyramid's deconv / identity / max-pool stage) makes
# strides 4, 8, 16, 32 from it, and mmdet's FPN adds lateral / output convs
# and the stride-64 level.
#
# Backbone checkpoint: tools/model_converters/mixedae2vit.py output, given
# with `--cfg-options model.backbone.init_cfg.checkpoint=OUT.pth` (a raw
# pre-training checkpoint is converted on load; a missing encoder tensor
# stops the run: mixedae's `Pretrained`); the position embedding is resized
# to the 1024-px grid on load and interpolated to each input's grid in the
# forward pass.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# mixedae: its `Pretrained` initializer checks and converts the checkpoint
custom_imports = dict(
    imports=['mmpretrain.models', 'projects.dense_vit.dense_vit', 'mixedae'],
    allow_failed_imports=False)

pretrained = 'pretrain/mixedae_vit-base-p16_backbone.pth'  # converted ckpt
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=1024,
        patch_size=16,
        out_indices=(11, ),
        out_type='featmap',  # (B, 768, H/16, W/16), cls token dropped
        drop_path_rate=0.1,
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # a list of necks is built as an nn.Sequential (mmengine)
    neck=[
        dict(
            type='SimpleFeaturePyramid',
            in_channels=768,
            scales=(4, 2, 1, 0.5)),  # channels 192, 384, 768, 768
        dict(
            type='FPN',
            in_channels=[192, 384, 768, 768],
            out_channels=256,
            num_outs=5),  # strides 4 .. 64, as the RPN anchors expect
    ])

# multi-scale training (Swin / BEiT-style scales, without the crop branch)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, short) for short in range(480, 801, 32)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))

# see the mmseg config: the libraries' layer-decay constructors do not
# recognise mmpretrain's VisionTransformer; this one (projects/dense_vit)
# decays by `backbone.layers.{i}` depth, heads and necks at lr x 1.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))

# 1x: 500-iter linear warmup, steps at epochs 8 and 11 (schedule_1x)
auto_scale_lr = dict(enable=False, base_batch_size=16)
