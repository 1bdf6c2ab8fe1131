# mmpretrain's own MAE ViT-B/16 300e, the baseline of every comparison.
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

# same data layout as the MixedAE configs: full batches only
train_dataloader = dict(drop_last=True)

# mmpretrain's MAE config auto-resumes (`resume = True`): refuse to resume a
# run whose config changed, as the MixedAE configs do. In `default_hooks`
# under the MixedAE configs' key, so that a derived config's `custom_hooks`
# (a list: replaced, not merged) cannot drop it; `default_hooks.
# resume_check=None` turns it off (with tools/train.py's MixedAERunner).
custom_imports = dict(imports=['mixedae'], allow_failed_imports=False)
runner_type = 'MixedAERunner'
default_hooks = dict(resume_check=dict(type='ResumeConfigCheckHook'))
