# mmpretrain's own MAE ViT-B/16 300e, the baseline of every comparison.
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

# same data layout as the MixedAE configs: full batches only
train_dataloader = dict(drop_last=True)

# mmpretrain's MAE config auto-resumes (`resume = True`): refuse to resume a
# run whose config changed, as the MixedAE configs do
custom_imports = dict(imports=['mixedae'], allow_failed_imports=False)
custom_hooks = [dict(type='ResumeConfigCheckHook')]
