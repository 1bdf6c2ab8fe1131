# Ablation: no homologous bias, so homologous attention recognises the
# sources from the content alone (no segment embedding either).
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(homo_bias=None))
