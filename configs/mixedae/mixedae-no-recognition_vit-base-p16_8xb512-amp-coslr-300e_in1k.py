# Ablation: no attention recognition loss, and no source cue either, so
# homologous attention must learn to recognise the sources from the
# reconstruction alone (on Fashion-MNIST it barely does, even with HomoCon:
# docs/homologous_recognition.md).
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(recognition_weight=None))
