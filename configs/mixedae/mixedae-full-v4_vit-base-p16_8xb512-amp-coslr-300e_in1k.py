# MixedAE-Full: 4 mixed views per group, cyclic shifts (M + v) mod G of one
# mask, so every patch of every image is encoded once (V = G), at about 4x the encoder and decoder cost.
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(num_views=4))
