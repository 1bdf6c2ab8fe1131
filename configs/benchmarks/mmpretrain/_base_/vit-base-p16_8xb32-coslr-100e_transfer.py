# Shared recipe for fine-tuning a MixedAE ViT-B/16 encoder on the 11
# classification sets of the slides' transferability table. The slides give
# no transfer hyper-parameters, so this is our choice: MAE's ImageNet
# fine-tuning recipe unchanged (model, 224 px augmentation, AdamW with
# layer-wise lr decay 0.65, 100 epochs, 5 warm-up) with the batch and lr
# scaled down for these small sets: global batch 8 x 32 = 256 and the same
# base lr 5e-4 per 256 images (`--auto-scale-lr` rescales it for another
# batch). Inputs are normalised with the ImageNet statistics the encoder was
# pre-trained with. Each dataset config sets the dataset, its splits and
# `num_classes` (left None here so that a config that forgets fails to build).
_base_ = [
    './models/vit-base-p16_finetune.py',
    './datasets/imagenet_bs128_mae-finetune-224.py',
    './schedules/adamw_layer-decay-0.65_coslr-100e.py',
    '../../../_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=None))
data_preprocessor = dict(num_classes=None)

train_dataloader = dict(
    batch_size=32,
    dataset=dict(type=None, data_root=None, split=None))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(type=None, data_root=None, split=None))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=5e-4 * 256 / 256))
auto_scale_lr = dict(base_batch_size=256)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=1))
randomness = dict(seed=0, diff_rank_seed=True)
