# The naive mixing baseline: mixed-image reconstruction with vanilla
# attention and no HomoCon (no homologous recognition at all).
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(homo_layers=[], recognition_weight=None),
    head=dict(homocon_loss=None))
