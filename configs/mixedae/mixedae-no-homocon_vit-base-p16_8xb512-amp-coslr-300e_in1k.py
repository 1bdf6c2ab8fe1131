# Ablation: homologous attention only, no HomoCon regulariser.
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(head=dict(homocon_loss=None))
