"""benchmarks/fashion_mnist/trivial_loss.py: the norm-pix loss of
predicting 0, the reference the study's loss curves are read against."""
import torch

from conftest import DATA, load_script, require_fashion_mnist


def test_trivial_loss_is_the_norm_pix_loss_of_predicting_zero():
    require_fashion_mnist()
    module = load_script('benchmarks/fashion_mnist/trivial_loss.py')
    with torch.no_grad():
        out = module.main(['--num', '64', '--data-root', DATA])
    flat, near = out['flat_patches'], out['near_flat_patches']
    assert 0.1 < flat < 0.6  # black background, not every patch
    # a non-flat patch's normalised target has mean square 15/16 (unbiased
    # var over 16 pixels) times var / (var + 1e-6): at most 15/16, and
    # at least 0.999 of it once var >= 1e-3
    lower = 15 / 16 * (1 - flat - near) * 0.999
    assert lower < out['trivial_loss'] <= 15 / 16 * (1 - flat) + 1e-6
