# ImageNet-1k end-to-end fine-tuning of a MixedAE ViT-B/16 encoder, 100
# epochs, MAE's recipe (mmpretrain configs/mae/benchmarks/
# vit-base-p16_8xb128-coslr-100e_in1k.py): AdamW lr 5e-4 x 1024/256,
# layer-wise lr decay 0.65, drop path 0.1, RandAugment, Mixup 0.8 / CutMix 1.0,
# label smoothing 0.1, average-pooled features; global batch 8 x 128 = 1024.
# The slides report 83.1 / 83.5 / 83.9 top-1 after 300 / 800 / 1600 epochs of
# MixedAE pre-training (not reproduced here).
#
#   python tools/model_converters/mixedae2vit.py PRETRAIN.pth BACKBONE.pth
#   bash tools/dist_train.sh THIS_CONFIG 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
#
# Differences from mmpretrain's MAE config, on purpose: the converted
# checkpoint needs no `prefix`; drop_last=True for training (as the official
# MAE fine-tuning); the swin-schedule keys for `absolute_pos_embed` /
# `relative_position_bias_table`, which a ViT does not have, are left out.
_base_ = [
    '_base_/models/vit-base-p16_finetune.py',
    '_base_/datasets/imagenet_bs128_mae-finetune-224.py',
    '_base_/schedules/adamw_layer-decay-0.65_coslr-100e.py',
    '../../_base_/default_runtime.py',
]

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
