# MixedAE ViT-L/16, 1600 epochs: MAE-L's encoder and decoder sizes.
#
# Memory (benchmarks/memory_estimate.py, per GPU, AMP): 256 per GPU with 2
# accumulation steps: 47.6 GiB (weights + AdamW 4.9, activations 36.1). At
# 512 per GPU about 87 GiB (activations doubled, extrapolated), over an
# 80 GB GPU; hence the halved batch, with the same global batch of
# 8 x 256 x 2 = 4096 and the same lr.
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(arch='l'),
    neck=dict(embed_dim=1024))
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(accumulative_counts=2)
# mmengine scales the lr by GPUs x batch_size, without the accumulation
auto_scale_lr = dict(base_batch_size=4096 // 2)
