# The default recipe plus HomoCon on the encoder's features, through a
# projector (the default before it was found to cost k-NN accuracy on
# Fashion-MNIST: docs/homologous_recognition.md).
_base_ = './mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    head=dict(
        homocon_loss=dict(
            _delete_=True,  # the default has None
            type='HomologousContrastiveLoss',
            temperature=0.25,
            loss_weight=0.1,
            projector=dict(
                in_channels=768, hid_channels=2048, out_channels=256))))
