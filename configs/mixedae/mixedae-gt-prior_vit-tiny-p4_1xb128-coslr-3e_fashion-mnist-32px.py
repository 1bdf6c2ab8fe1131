# The CPU demo with the ground-truth prior (the default recipe before
# recognition was learned from content): a learnable, non-negative bias
# for the keys of the query's own source in every homologous-attention
# layer, computed from the mixing mask, and no recognition loss
# (docs/homologous_recognition.md).
_base_ = ('./mixedae-feature-homocon_vit-tiny-p4_1xb128-coslr-3e_'
          'fashion-mnist-32px.py')

model = dict(backbone=dict(homo_bias=1.0, recognition_weight=None))
