# ViT-B/16 classifier for end-to-end fine-tuning of a MixedAE encoder, MAE's
# fine-tuning model (mmpretrain configs/mae/benchmarks/
# vit-base-p16_8xb128-coslr-100e_in1k.py): drop path 0.1, average-pooled
# patch tokens through a new LayerNorm (`out_type='avg_featmap'` builds
# `ln2`, MAE's fc_norm; `final_norm=False` drops the pre-trained final norm),
# label smoothing 0.1, Mixup 0.8 / CutMix 1.0 as batch augments.
#
# The backbone loads the *converted* checkpoint
# (tools/model_converters/mixedae2vit.py): its keys are already plain
# `VisionTransformer` keys, so no `prefix` (mmpretrain's MAE configs use
# prefix='backbone.' because they load the raw pre-training checkpoint).
# mixedae's `Pretrained` (mixedae/models/utils/pretrained_init.py) also
# takes a raw pre-training or official MAE checkpoint, converting it on
# load, and stops if any encoder tensor is missing (`ln2` starts fresh).
# The checkpoint is a placeholder (mmpretrain leaves ''), worded so that a
# run that forgets it stops with "<...> can not be found" saying what to set:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# Heads set `num_classes` per dataset (1000: ImageNet-1k).
pretrained = '<set model.backbone.init_cfg.checkpoint (mixedae2vit output)>'
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
