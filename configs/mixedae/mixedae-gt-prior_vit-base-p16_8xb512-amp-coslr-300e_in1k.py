# The ground-truth prior (the default recipe before recognition was learned
# from content): every homologous-attention layer gets a learnable,
# non-negative bias for the keys of the query's own source, computed from
# the mixing mask, and no recognition loss. Its attention is homologous
# because it is told the sources: from content alone it recognises nothing
# (docs/homologous_recognition.md).
_base_ = './mixedae-feature-homocon_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(homo_bias=1.0, recognition_weight=None))
