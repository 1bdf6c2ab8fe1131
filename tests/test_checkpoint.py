import importlib.util
import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from mmengine.logging import MessageHub
from mmpretrain.models import VisionTransformer

from conftest import TINY_ARCH
from mixedae.utils.checkpoint import (CheckpointError, convert_to_vit,
                                      load_checkpoint_safely, timm_to_vit,
                                      vit_to_timm)


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


# --- the converter's inputs and outputs -------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERTER = os.path.join(ROOT, 'tools/model_converters/mixedae2vit.py')


def _converter():
    spec = importlib.util.spec_from_file_location('mixedae2vit', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timm_layout(vit, num_layers):
    """The official MAE / timm names of an mmpretrain ViT's tensors, written
    out from timm's ``VisionTransformer`` (``Block``: norm1, attn.qkv,
    attn.proj, norm2, mlp.fc1, mlp.fc2; final ``norm``), independently of
    the converter's own table."""
    out = {
        'cls_token': vit['cls_token'],
        'pos_embed': vit['pos_embed'],
        'patch_embed.proj.weight': vit['patch_embed.projection.weight'],
        'patch_embed.proj.bias': vit['patch_embed.projection.bias'],
        'norm.weight': vit['ln1.weight'],
        'norm.bias': vit['ln1.bias'],
    }
    for i in range(num_layers):
        for timm_name, mm_name in (('norm1', 'ln1'), ('attn.qkv', 'attn.qkv'),
                                   ('attn.proj', 'attn.proj'),
                                   ('norm2', 'ln2'),
                                   ('mlp.fc1', 'ffn.layers.0.0'),
                                   ('mlp.fc2', 'ffn.layers.1')):
            for p in ('weight', 'bias'):
                out[f'blocks.{i}.{timm_name}.{p}'] = \
                    vit[f'layers.{i}.{mm_name}.{p}']
    return out


@pytest.fixture
def vit_sd(tiny_model):
    return convert_to_vit(dict(state_dict=tiny_model.state_dict()))


def _run(argv, capsys):
    """The CLI's main() in this process: (exit status, stdout, stderr)."""
    try:
        _converter().main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _garbage(tmp_path, tiny_model):
    """Files the converter must refuse: (file, what the error says)."""
    cases = []
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(bytes(range(256)) * 8)
    cases.append((noise, 'not a PyTorch checkpoint'))
    full = tmp_path / 'full.pth'
    _runner_like_checkpoint(tiny_model, full)
    for name, legacy in (('cut.pth', False), ('cut_legacy.pth', True)):
        src = tmp_path / f'src_{name}'
        torch.save(dict(state_dict=tiny_model.state_dict()), src,
                   _use_new_zipfile_serialization=not legacy)
        data = src.read_bytes()
        (tmp_path / name).write_bytes(data[:len(data) // 2])
        cases.append((tmp_path / name, 'truncated or corrupt'))
    tensor = tmp_path / 'tensor.pth'
    torch.save(torch.ones(3), tensor)
    cases.append((tensor, 'expected a dict .* got a torch.Tensor'))
    legacy_tensor = tmp_path / 'tensor_legacy.pth'
    torch.save(torch.ones(3), legacy_tensor,
               _use_new_zipfile_serialization=False)
    cases.append((legacy_tensor, 'expected a dict .* got a torch.Tensor'))
    not_a_model = tmp_path / 'optimizer.pth'
    torch.save(dict(step=torch.ones(1)), not_a_model)
    cases.append((not_a_model, 'not a MixedAE/MAE pre-training checkpoint'))
    cases.append((tmp_path / 'missing.pth', 'can not be found'))
    return cases


def test_cli_errors_are_one_line_naming_the_file(tiny_model, tmp_path,
                                                 capsys):
    for path, expected in _garbage(tmp_path, tiny_model):
        code, out, err = _run([path, tmp_path / 'out.pth'], capsys)
        assert code == 1, (path, err)
        assert err.count('\n') == 1 and str(path) in err, err
        assert re.search(expected, err), err
        assert 'Traceback' not in err
        assert not (tmp_path / 'out.pth').exists()


def test_cli_error_without_traceback_as_a_user_runs_it(tmp_path):
    noise = tmp_path / 'random.pth'
    noise.write_bytes(os.urandom(4096))
    out = subprocess.run(
        [sys.executable, CONVERTER, str(noise), str(tmp_path / 'o.pth')],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f'mixedae2vit.py: error: {noise}: not a PyTorch checkpoint ('
        'expected a file written by torch.save: a zip archive or the legacy '
        f'pickle format; it starts with {open(noise, "rb").read(8)!r}).'
    ]


def test_legacy_format_checkpoint_converts(tiny_model, tmp_path, vit_sd):
    """torch.save's pre-1.6 format, with mmengine runner state (which the
    weights-only loader refuses, so the restricted unpickler reads it)."""
    path = tmp_path / 'legacy.pth'
    hub = MessageHub.get_instance('test_checkpoint_legacy')
    hub.update_scalar('train/loss', 1.0)
    torch.save(
        dict(state_dict=tiny_model.state_dict(), message_hub=hub.state_dict()),
        path, _use_new_zipfile_serialization=False)
    with open(path, 'rb') as f:
        assert not f.read(4).startswith(b'PK')
    got = convert_to_vit(load_checkpoint_safely(str(path)))
    assert set(got) == set(vit_sd)
    assert all(torch.equal(got[k], v) for k, v in vit_sd.items())


def test_export_to_timm_layout(tiny_model, tmp_path, vit_sd, capsys):
    src, dst = tmp_path / 'pretrain.pth', tmp_path / 'timm.pth'
    _runner_like_checkpoint(tiny_model, src)
    code, out, err = _run([src, dst, '--to', 'timm'], capsys)
    assert code == 0, err
    saved = torch.load(dst, map_location='cpu')
    # `model`: what timm's load_state_dict, MAE's main_finetune.py and
    # detectron2's checkpointer read
    expected = _timm_layout(vit_sd, num_layers=TINY_ARCH['num_layers'])
    assert set(saved['model']) == set(expected)
    for key, value in expected.items():
        assert torch.equal(saved['model'][key], value), key


def test_official_mae_layout_round_trip(tiny_model, tmp_path, vit_sd, capsys):
    """official MAE checkpoint -> mmpretrain keys -> timm keys gives back
    the official encoder tensors (decoder and mask token dropped)."""
    encoder = _timm_layout(vit_sd, num_layers=TINY_ARCH['num_layers'])
    official = dict(encoder)
    official.update({
        'mask_token': torch.zeros(1, 1, 32),
        'decoder_embed.weight': torch.zeros(32, 64),
        'decoder_pos_embed': torch.zeros(1, 17, 32),
        'decoder_blocks.0.attn.qkv.weight': torch.zeros(96, 32),
        'decoder_norm.weight': torch.zeros(32),
        'decoder_pred.weight': torch.zeros(192, 32),
    })
    src = tmp_path / 'mae_pretrain_vit_tiny.pth'
    torch.save(dict(model=official, epoch=799, args=None), src)
    mm, back = tmp_path / 'mm.pth', tmp_path / 'back.pth'
    assert _run([src, mm], capsys)[0] == 0
    converted = torch.load(mm, map_location='cpu')['state_dict']
    assert set(converted) == set(vit_sd)
    assert all(torch.equal(converted[k], v) for k, v in vit_sd.items())
    VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8) \
        .load_state_dict(converted, strict=True)
    assert _run([mm, back, '--to', 'timm'], capsys)[0] == 0
    again = torch.load(back, map_location='cpu')['model']
    assert set(again) == set(encoder)
    assert all(torch.equal(again[k], v) for k, v in encoder.items())


def test_timm_fine_tuned_layout_maps_fc_norm():
    """A timm / MAE fine-tuned ViT (global pool: fc_norm, head) converts:
    fc_norm is mmpretrain's ln2, the classifier is dropped."""
    vit = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8,
                            out_type='avg_featmap', final_norm=False)
    state = vit_to_timm(vit.state_dict())
    assert {'fc_norm.weight', 'fc_norm.bias'} <= set(state)
    assert not any(k.startswith('norm.') for k in state)
    state['head.weight'] = torch.zeros(10, 64)
    back = convert_to_vit(dict(model=state))
    assert set(back) == set(vit.state_dict())


def test_keys_without_a_counterpart_are_named():
    vit = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8)
    state = dict(vit.state_dict())
    state['layers.0.gamma1.weight'] = torch.ones(64)  # layer scale
    with pytest.raises(CheckpointError, match=r'layers\.0\.gamma1\.weight'):
        vit_to_timm(state)
    timm_state = vit_to_timm(vit.state_dict())
    timm_state['dist_token'] = torch.zeros(1, 1, 64)  # DeiT
    with pytest.raises(CheckpointError, match='dist_token'):
        timm_to_vit(timm_state)
