# The CPU demo with MixedAE as we first read the paper: segment embedding on
# the tokens, homologous attention from the content alone, HomoCon on the
# encoder's output features (docs/homologous_recognition.md).
_base_ = ('./mixedae-feature-homocon_vit-tiny-p4_1xb128-coslr-3e_'
          'fashion-mnist-32px.py')

model = dict(
    backbone=dict(segment_embed='tokens', recognition_weight=None),
    head=dict(homocon_loss=dict(projector=None)))
