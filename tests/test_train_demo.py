"""A short real run of the demo config on Fashion-MNIST with mmengine's
Runner: losses and homologous precision logged, checkpoint and pictures
written."""
import glob
import json

from mmengine.runner import Runner

from conftest import demo_cfg


def test_demo_trains_on_fashion_mnist_and_leaves_outputs(tmp_path):
    cfg = demo_cfg(tmp_path)
    cfg.custom_hooks = [
        dict(type='MixingVisualizationHook', num_images=8, zoom=2)
    ]
    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))
    assert logs
    records = [json.loads(line) for line in open(logs[0])]
    train = [r for r in records if 'loss_rec' in r]
    assert len(train) == 4  # 8 iterations, logged every 2
    # every term and layer logged (that training learns is checked in
    # test_pretraining_learns.py)
    for r in train:
        assert {'loss_rec', 'loss_recog', 'homo_prec'} | {
            f'homo_prec{kind}_l{i}' for i in range(6)
            for kind in ('', '_content', '_content_fg')} <= set(r)
        assert 'loss_homocon' not in r  # the default has no feature HomoCon
    assert (tmp_path / 'epoch_1.pth').exists()
    pngs = glob.glob(str(tmp_path / 'vis' / 'epoch_1' / 'group_*.png'))
    assert len(pngs) == 2  # 8 images in groups of 4
