# Ablation: HomoCon only, vanilla attention in every layer.
_base_ = './mixedae-feature-homocon_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(homo_layers=[], recognition_weight=None))
