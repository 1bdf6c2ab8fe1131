# MixedAE-Full: 2 mixed views per group, cyclic shifts (M + v) mod G of one
# mask, at about 2x the encoder and decoder cost.
#
# Memory (benchmarks/memory_estimate.py, per GPU, AMP): 66.3 GiB at 512
# images per GPU (weights + AdamW 1.7, activations 56.1), under the 70 GiB
# we allow on an 80 GB GPU, so the per-GPU batch stays 512.
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(num_views=2))
