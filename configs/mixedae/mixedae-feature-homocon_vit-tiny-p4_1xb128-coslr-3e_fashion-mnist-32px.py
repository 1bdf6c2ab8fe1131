# The CPU demo with HomoCon on the encoder's features, through a projector
# (the default before it was found to cost k-NN accuracy: 2.0 points
# [1.0, 3.0] over 3 seeds, docs/homologous_recognition.md): the default's
# recognition loss plus the paper's homologous contrastive loss.
_base_ = './mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py'

model = dict(
    head=dict(
        homocon_loss=dict(
            _delete_=True,  # the default has None
            type='HomologousContrastiveLoss',
            temperature=0.25,
            loss_weight=0.1,
            projector=dict(
                in_channels=192, hid_channels=512, out_channels=128))))
