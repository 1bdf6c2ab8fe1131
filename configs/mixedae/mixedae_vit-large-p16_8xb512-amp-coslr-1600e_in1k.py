# MixedAE ViT-L/16, 1600 epochs: MAE-L's encoder and decoder sizes.
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(arch='l'),
    neck=dict(embed_dim=1024))
