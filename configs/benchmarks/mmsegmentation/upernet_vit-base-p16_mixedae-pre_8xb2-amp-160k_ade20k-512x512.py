# UperNet + ViT-B/16 initialised from a MixedAE encoder, ADE20K 512x512,
# 160k iterations at 8 GPUs x 2 images: mmseg's MAE recipe,
# `mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py`, inherited
# whole: dataset and pipelines, Feature2Pyramid neck (rescales
# [4, 2, 1, 0.5]), UPerHead + FCN auxiliary head, AdamW lr 1e-4 betas
# (0.9, 0.999) wd 0.05, layer-wise lr decay 0.65, 1500 linear warm-up
# iterations then poly, slide inference (512 crops, stride 341), checkpoints
# and validation every 16k iterations. Only what follows is ours.
#
# Differences from the recipe, all of them:
# 1. Backbone class: mmpretrain's `BEiTViT` set up as mmseg's `MAE` (ViT-B,
#    absolute position embedding, a relative position bias per layer, layer
#    scale initialised to 1.0, q/k/v biases, drop path 0.1, out_indices
#    [3, 5, 7, 11], no final norm). Same parameter names and the same
#    forward as mmseg's MAE (tests/test_benchmark_configs_dense.py), but it
#    loads through the `Pretrained` initializer (mixedae's checked one) and
#    resizes the position embedding in its load hook (224 -> 512 px,
#    bicubic, as MAE does).
# 2. Relative position bias tables start from mmpretrain's trunc-normal
#    (std 0.02) init; mmseg's MAE starts them at 0. mmengine runs the
#    children's init_weights before a Pretrained init_cfg, and no config
#    setting reaches that order.
# 3. AMP: `AmpOptimWrapper` with dynamic loss scaling, what mmseg's
#    `train.py --amp` sets. The recipe's `fp16 = dict(loss_scale='dynamic')`
#    (inherited, an mmseg 0.x key) is ignored by mmengine, so the recipe as
#    written trains in fp32 unless `--amp` is given.
# 4. Layer decay through ViTLayerDecayOptimWrapperConstructor instead of
#    mmseg's LayerDecayOptimizerConstructor: the same lr and weight decay
#    for every parameter (see optim_wrapper below).
# 5. Weights: a MixedAE encoder instead of the MAE one.
#
# Backbone checkpoint: the output of
#   python tools/model_converters/mixedae2vit.py PRETRAIN.pth OUT.pth
# (mmpretrain VisionTransformer keys), given with
# `--cfg-options model.backbone.init_cfg.checkpoint=OUT.pth`.
# Keys in the model but not in the checkpoint (fresh, as in the recipe;
# `fresh_keys` below, declared in init_cfg.allow_missing):
#   layers.{0..11}.gamma_1, layers.{0..11}.gamma_2 (layer scale, 1.0),
#   layers.{0..11}.attn.relative_position_bias_table (see 2),
#   layers.{0..11}.attn.relative_position_index (a fixed index buffer).
# Checkpoint keys not used (as in the recipe, final_norm=False):
#   ln1.weight, ln1.bias (the encoder's final LayerNorm).
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
# mixedae: its `Pretrained` initializer checks and converts the checkpoint
custom_imports = dict(
    imports=['mmpretrain.models', 'projects.dense_vit.dense_vit', 'mixedae'],
    allow_failed_imports=False)

pretrained = 'pretrain/mixedae_vit-base-p16_backbone.pth'  # converted ckpt
fresh_keys = [
    'layers.*.gamma_1', 'layers.*.gamma_2',
    'layers.*.attn.relative_position_bias_table',
    'layers.*.attn.relative_position_index'
]
model = dict(
    pretrained=None,  # the recipe's checkpoint path; ours: init_cfg
    backbone=dict(
        _delete_=True,
        type='mmpretrain.BEiTViT',
        arch='b',
        img_size=512,
        patch_size=16,
        out_indices=[3, 5, 7, 11],
        drop_path_rate=0.1,
        bias=True,  # learnable q, k and v biases (mmseg MAE: bias=True)
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=False,
        out_type='featmap',  # (B, 768, 32, 32) per index, cls token dropped
        with_cls_token=True,
        use_abs_pos_emb=True,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=1.0,  # the recipe's init_values=1.0
        interpolate_mode='bicubic',
        init_cfg=dict(
            type='Pretrained',
            checkpoint=pretrained,
            allow_missing=fresh_keys)))

# The recipe's AdamW, and on every parameter the lr and weight decay of
# its LayerDecayOptimizerConstructor (num_layers 12, decay 0.65: layer i at
# lr x 0.65 ** (12 - i), stem at lr x 0.65 ** 13, neck and heads at lr; no
# weight decay on 1-d tensors, weight decay on pos_embed, cls_token and the
# relative position tables, as there), tested against it on the recipe's
# own model. The depth comes from the backbone (projects/dense_vit), not
# from `num_layers`, so a config shrunk to fewer layers keeps its meaning.
optim_wrapper = dict(
    type='AmpOptimWrapper',  # dynamic loss scaling, its default
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True, layer_decay_rate=0.65, flat_decay_mult=0.0))
