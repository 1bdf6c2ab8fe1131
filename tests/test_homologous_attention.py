import torch
from mmpretrain.models.utils import MultiheadAttention

from mixedae.models import HomologousAttention
from mixedae.models.utils import homologous_precision


def _pair(seed=0):
    torch.manual_seed(seed)
    homo = HomologousAttention(embed_dims=32, num_heads=4)
    vanilla = MultiheadAttention(embed_dims=32, num_heads=4)
    # same parameter names: the state dicts are interchangeable
    assert homo.state_dict().keys() == vanilla.state_dict().keys()
    vanilla.load_state_dict(homo.state_dict())
    return homo.eval(), vanilla.eval()


def test_topk_n_equals_vanilla_attention():
    homo, vanilla = _pair()
    x = torch.randn(3, 17, 32)
    ref = vanilla(x)
    assert torch.allclose(homo(x, topk=17), ref, atol=1e-6)  # top-k path
    assert torch.allclose(homo(x), ref, atol=1e-6)  # no top-k: vanilla


def test_topk_one_returns_argmax_value():
    homo, _ = _pair(1)
    x = torch.randn(2, 9, 32)
    out = homo(x, topk=1)
    B, T, _ = x.shape
    qkv = homo.qkv(x).reshape(B, T, 3, 4, 8).permute(2, 0, 3, 1, 4)
    q, k, v = qkv
    idx = (q @ k.transpose(-2, -1)).argmax(-1)  # (B, h, T)
    picked = torch.gather(v, 2, idx.unsqueeze(-1).expand(-1, -1, -1, 8))
    expected = homo.proj(picked.transpose(1, 2).reshape(B, T, 32))
    assert torch.allclose(out, expected, atol=1e-6)


def test_topk_changes_the_output_and_keeps_gradients():
    homo, vanilla = _pair(2)
    x = torch.randn(2, 9, 32, requires_grad=True)
    out = homo(x, topk=3)
    assert not torch.allclose(out, vanilla(x), atol=1e-4)
    out.sum().backward()
    assert homo.qkv.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_homologous_precision_counts_kept_keys_of_own_source():
    # 1 query-less cls token (-1) and 4 patches from sources 0, 0, 1, 1
    src = torch.tensor([[-1, 0, 0, 1, 1]])
    keep = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    keep[0, 0, 1, [1, 2]] = True  # source-0 query keeps 2 own keys
    keep[0, 0, 2, [0, 3]] = True  # keeps cls + a foreign key: 0 own
    keep[0, 0, 3, [3, 4]] = True  # 2 own
    keep[0, 0, 4, [1, 4]] = True  # 1 own
    keep[0, 0, 0, :] = True  # the cls query is not counted
    prec = homologous_precision(keep, src)
    assert torch.isclose(prec, torch.tensor(5 / 8))


def test_precision_is_stored_when_sources_are_given():
    homo, _ = _pair(3)
    x = torch.randn(2, 5, 32)
    src = torch.tensor([[-1, 0, 0, 1, 1]] * 2)
    homo(x, topk=2, source_ids=src)
    assert 0 <= float(homo.homologous_precision) <= 1
    homo(x)
    assert homo.homologous_precision is None
