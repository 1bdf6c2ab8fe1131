# MixedAE-Full: 4 mixed views per group, cyclic shifts (M + v) mod G of one
# mask, so every patch of every image is encoded once (V = G), at about 4x
# the encoder and decoder cost.
#
# Memory (benchmarks/memory_estimate.py, per GPU, AMP): 256 per GPU with 2
# accumulation steps: 59.0 GiB (activations 49.4: the encoder and decoder
# run on 4 views). At 512 per GPU about 113 GiB (activations
# doubled, extrapolated), over an 80 GB GPU; hence the halved batch, with
# the same global batch of 8 x 256 x 2 = 4096 and the same lr.
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(num_views=4))
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(accumulative_counts=2)
# mmengine scales the lr by GPUs x batch_size, without the accumulation
auto_scale_lr = dict(base_batch_size=4096 // 2)
