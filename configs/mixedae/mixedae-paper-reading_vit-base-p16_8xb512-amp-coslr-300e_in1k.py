# MixedAE as we first read the paper: a learnable segment embedding added to
# every patch token (MixMIM's mix embedding), homologous attention from the
# content alone, HomoCon on the encoder's output features. On Fashion-MNIST
# its last homologous-attention layer turns anti-homologous and HomoCon sits
# at its floor from the first epoch: docs/homologous_recognition.md.
_base_ = './mixedae-feature-homocon_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(segment_embed='tokens', recognition_weight=None),
    head=dict(homocon_loss=dict(projector=None)))
