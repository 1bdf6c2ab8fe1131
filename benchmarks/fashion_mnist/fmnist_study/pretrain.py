"""Pre-training one (method, seed) with mmengine's Runner, resumable from
its last epoch checkpoint; the random-init floor; what a run logged; and
the homologous recognition of a pre-trained MixedAE."""
import glob
import json
import os.path as osp
import time
from typing import Dict, List, Optional

import torch

from .methods import MAE_CFG, ROOT, method_config, slug

# the scalars a run's curves keep (the rest of mmengine's log is timing)
CURVE_SKIP = ('time', 'data_time', 'eta', 'img_per_sec', 'epoch', 'iter')


def study_config(method: str, seed: int, budget: dict, work_dir: str,
                 data_root: str):
    """The pre-training config of one run: the method's config and
    overrides, the budget's data, epochs and schedule, one checkpoint per
    epoch (the resume points; the newest one kept)."""
    cfg = method_config(method)
    bs, epochs = budget['batch_size'], budget['epochs']
    num = budget['pretrain_images']
    cfg.work_dir = work_dir
    cfg.experiment_name = f'pretrain_{slug(method)}_seed{seed}'
    loader = cfg.train_dataloader
    loader.dataset.data_root = data_root
    loader.dataset.indices = num
    loader.batch_size = bs
    loader.num_workers = 0  # 2 cores: workers would compete with compute
    loader.persistent_workers = False
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    iters = epochs * ((num or 60000) // bs)
    if iters < 1:
        raise ValueError(f'{num} pre-training images make no batch of {bs}.')
    # the same schedule for every method: linear warm-up over the first
    # `warmup_fraction` of the iterations (the demo config: 1 of 3 epochs),
    # then cosine to 0
    warm = max(1, round(budget.get('warmup_fraction', 0.1) * iters))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
             end=warm),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warm,
             end=max(iters, warm + 1), eta_min=0.)
    ]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=20)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1)
    # no pictures in a benchmark; the guards stay (RNG states make a
    # resumed run draw what an uninterrupted one would)
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h['type'] != 'MixingVisualizationHook']
    cfg.randomness = dict(seed=seed, diff_rank_seed=True)
    return cfg, iters


def _train_timer(work_dir: str):
    """A hook timing the training loop alone (from ``before_train``, after
    the data, model and optimiser are built, to ``after_train``), over all
    sittings of a resumed run: after every epoch it writes the total so far
    to ``work_dir/train_seconds`` (an epoch cut short is redone on resume,
    so only finished epochs count)."""
    from mmengine.hooks import Hook
    path = osp.join(work_dir, 'train_seconds')

    class TrainTimer(Hook):
        seconds = None

        def before_train(self, runner):
            self._start = time.perf_counter()
            self._before = 0.
            if runner.epoch > 0 and osp.exists(path):  # resumed
                with open(path) as f:
                    self._before = float(f.read())

        def after_train_epoch(self, runner):
            self.seconds = self._before + time.perf_counter() - self._start
            with open(path, 'w') as f:
                f.write(f'{self.seconds:.1f}')

    return TrainTimer()


def pretrain(method: str, seed: int, budget: dict, work_dir: str,
             data_root: str, quiet: bool = True, hooks=()) -> dict:
    """Pre-train ``method``, resuming from the newest epoch checkpoint in
    ``work_dir`` when an earlier sitting left one (``hooks``: more hooks
    for the Runner). Returns the final checkpoint's path, the
    training-loop time (all sittings), the iterations, the logged curves
    and their last values."""
    from mmengine.runner import Runner
    cfg, iters = study_config(method, seed, budget, work_dir, data_root)
    final = osp.join(work_dir, f"epoch_{budget['epochs']}.pth")
    seconds = resumed = None
    if not osp.exists(final):
        resumed = _newest_checkpoint(work_dir)
        cfg.resume = resumed is not None  # mmengine finds the newest one
        if quiet:
            cfg.log_level = 'WARNING'
        runner = Runner.from_cfg(cfg)
        timer = _train_timer(work_dir)
        runner.register_hook(timer, priority='VERY_LOW')
        for hook in hooks:
            runner.register_hook(hook)
        runner.train()
        seconds = timer.seconds
    elif osp.exists(osp.join(work_dir, 'train_seconds')):
        with open(osp.join(work_dir, 'train_seconds')) as f:
            seconds = float(f.read())  # trained, not yet evaluated
    curves = read_curves(work_dir)
    return dict(checkpoint=final, seconds=seconds, iters=iters,
                resumed_from=resumed, curves=curves,
                final_scalars=last_values(curves))


def _newest_checkpoint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(path):
        return None
    with open(path) as f:
        ckpt = f.read().strip()
    return osp.basename(ckpt) if osp.exists(ckpt) else None


def read_curves(work_dir: str) -> List[dict]:
    """Every logged training record of a run (the scalars of all its
    sittings, a resumed one's replacing the steps it repeated), without the
    timing, values rounded to 5 significant digits."""
    by_step: Dict[int, dict] = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        for record in map(json.loads, open(path)):
            record = {k: v for k, v in record.items() if k not in CURVE_SKIP}
            by_step[record['step']] = {
                k: v if k == 'step' else float(f'{v:.5g}')
                for k, v in record.items()}
    return [by_step[s] for s in sorted(by_step)]


def last_values(curves: List[dict]) -> dict:
    """The last logged value of every training scalar (losses, per-layer
    precision, ...)."""
    out = {}
    for record in curves:
        out.update(record)
    for key in ('step', 'lr'):
        out.pop(key, None)
    return out


def random_init(seed: int) -> dict:
    """The floor: an initialised, untrained MAE model of the same config,
    converted like a checkpoint (MAE's sin-cos position embedding and init)."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    from mixedae.utils.checkpoint import convert_to_vit
    cfg = Config.fromfile(osp.join(ROOT, MAE_CFG))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return convert_to_vit(dict(state_dict=model.state_dict()))


@torch.no_grad()
def recognition(method: str, checkpoint: str, images: torch.Tensor,
                seed: int = 0) -> Optional[dict]:
    """Per homologous-attention layer, the precision of the pre-trained
    model on ``images`` (normalised), mixed with masks drawn from ``seed``
    (the same for every method): as trained, from content alone (every
    source cue removed), and from content over foreground queries; None
    for a model without homologous attention."""
    from mmpretrain.registry import MODELS

    from mixedae.utils.checkpoint import load_checkpoint_safely, state_dict_of
    cfg = method_config(method)
    model = MODELS.build(cfg.model)
    if not getattr(model.backbone, 'homo_layers', None):
        return None
    model.load_state_dict(state_dict_of(load_checkpoint_safely(checkpoint)))
    model.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        out = model.recognition(images)
    finally:
        torch.random.set_rng_state(state)
    layers = model.backbone.homo_layers
    table = {name: [round(float(out[f'{prefix}_l{i}']), 4) for i in layers]
             for name, prefix in (('as_trained', 'homo_prec'),
                                  ('content', 'homo_prec_content'),
                                  ('content_fg', 'homo_prec_content_fg'))}
    return dict(layers=layers, images=len(images), mask_seed=seed,
                fg_share=round(float(out['fg_share']), 4), **table)
