import os
import pickle
from collections import OrderedDict

import pytest
import torch
from mmengine.logging import MessageHub
from mmpretrain.models import VisionTransformer

from conftest import TINY_ARCH
from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely


def _runner_like_checkpoint(model, path):
    hub = MessageHub.get_instance('test_checkpoint')
    hub.update_scalar('train/loss', 1.0)
    opt = torch.optim.AdamW(model.parameters())
    torch.save(
        dict(
            meta=dict(epoch=1, seed=0),
            state_dict=model.state_dict(),
            message_hub=hub.state_dict(),
            optimizer=opt.state_dict()), path)


def test_converted_checkpoint_loads_into_vit_with_equal_tensors(
        tiny_model, tmp_path):
    path = tmp_path / 'pretrain.pth'
    _runner_like_checkpoint(tiny_model, path)
    vit_sd = convert_to_vit(load_checkpoint_safely(str(path)))
    assert not any(k.startswith(('neck', 'head', 'backbone'))
                   for k in vit_sd)
    assert 'segment_embed' not in vit_sd
    vit = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8)
    vit.load_state_dict(vit_sd, strict=True)  # no missing or extra keys
    for k, v in vit.state_dict().items():
        assert torch.equal(v, tiny_model.backbone.state_dict()[k]), k


def test_position_embedding_resized(tiny_model, tmp_path):
    vit_sd = convert_to_vit(dict(state_dict=tiny_model.state_dict()),
                            img_size=64)
    assert vit_sd['pos_embed'].shape == (1, 1 + 64, 64)
    vit = VisionTransformer(arch=TINY_ARCH, img_size=64, patch_size=8)
    vit.load_state_dict(vit_sd, strict=True)
    with pytest.raises(ValueError, match='img_size'):
        convert_to_vit(dict(state_dict=tiny_model.state_dict()), img_size=60)


def test_not_a_pretraining_checkpoint_is_a_clear_error(tiny_model):
    sd = {k: v for k, v in tiny_model.state_dict().items()
          if not k.startswith('neck')}
    with pytest.raises(ValueError, match='pre-training checkpoint'):
        convert_to_vit(dict(state_dict=sd))


class _Evil:

    def __reduce__(self):
        return (os.system, ('touch /tmp/mixedae_pwned',))


def test_loading_refuses_to_run_pickled_code(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_Evil()), path)
    if os.path.exists('/tmp/mixedae_pwned'):
        os.remove('/tmp/mixedae_pwned')
    with pytest.raises(pickle.UnpicklingError, match='posix.system'):
        load_checkpoint_safely(str(path))
    assert not os.path.exists('/tmp/mixedae_pwned')


class _Getattr:

    def __reduce__(self):
        return (getattr, (OrderedDict, 'fromkeys'))  # an allowed class


def test_getattr_is_only_allowed_on_history_buffer(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save(dict(state_dict={}, meta=_Getattr()), path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        load_checkpoint_safely(str(path))
