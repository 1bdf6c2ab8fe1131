"""k-NN and linear-probe top-1 of a frozen ViT encoder: a quick check of
whether a checkpoint learned anything (DINO's ``eval_knn.py`` /
``eval_linear.py``, MAE's ``main_linprobe.py`` on extracted features).

    python tools/analysis_tools/eval_knn_linear.py CONFIG CHECKPOINT \
        [--feature cls|avg] [--k 10 20 ...] [--temperature 0.07] \
        [--probes knn linear] [--linear-epochs 100] [--linear-lr 1e-3] \
        [--linear-batch-size 256] [--linear-weight-decay 1e-4] \
        [--batch-size N] [--num-workers N] [--cache-dir DIR] \
        [--out RESULT.json] [--cfg-options k=v ...] \
        [--launcher none|pytorch|slurm|mpi]
    # 8 GPUs: each extracts a shard, the features are gathered on rank 0
    torchrun --nproc_per_node 8 tools/analysis_tools/eval_knn_linear.py \
        CONFIG CHECKPOINT --launcher pytorch

CONFIG: an mmpretrain classification config (``model.backbone``, a
ViT; ``data_preprocessor``; ``train_dataloader`` and ``val_dataloader``),
e.g. the downstream configs of ``configs/benchmarks/mmpretrain/``.
CHECKPOINT: a MixedAE / MAE pre-training checkpoint (converted on load as
``tools/model_converters/mixedae2vit.py`` does), an official MAE / timm
one, or an already converted ViT; every encoder key must fit the config's
backbone. Both splits go through the *val* pipeline (no augmentation).
See docs/evaluation.md.
"""
import argparse
import copy
import json
import os
import os.path as osp
import pickle
import sys
import time

import torch
from mmengine.config import Config, DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# configs may import `projects.*` from the repository root
sys.path.insert(0, ROOT)

from mixedae.evaluation import (FEATURES, FeatureCache,  # noqa: E402
                                build_frozen_vit, extract_features,
                                feature_key, file_digest, knn_classify,
                                linear_probe, load_vit_checkpoint, top1)
from mixedae.utils.checkpoint import CheckpointError  # noqa: E402
from mixedae.utils.dist import init_distributed  # noqa: E402

SPLITS = ('train', 'val')
FEATURE_HELP = {'cls': 'cls token', 'avg': 'mean patch token'}


class InputError(ValueError):
    """A wrong argument or config; the message names it."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='k-NN and linear probe on frozen features of a ViT '
        'checkpoint (train and val splits of an mmpretrain config).')
    parser.add_argument('config', help='mmpretrain classification config')
    parser.add_argument(
        'checkpoint',
        help='pre-training checkpoint (converted on load) or converted ViT')
    parser.add_argument(
        '--feature',
        choices=FEATURES,
        default='cls',
        help='cls: the cls token, avg: the mean patch token, both after the '
        'final norm (default: cls, the feature of DINO\'s k-NN and MAE\'s '
        'linear probe)')
    parser.add_argument(
        '--probes',
        nargs='+',
        choices=('knn', 'linear'),
        default=['knn', 'linear'],
        help='what to run on the features (default: both)')
    parser.add_argument(
        '--k',
        type=int,
        nargs='+',
        default=[20],
        help='k-NN neighbours; several values give one result each '
        '(default: 20)')
    parser.add_argument(
        '--temperature',
        type=float,
        default=0.07,
        help='k-NN vote weight exp(cos / T) (default: 0.07)')
    parser.add_argument(
        '--linear-epochs', type=int, default=100,
        help='linear-probe epochs over the train features (default: 100)')
    parser.add_argument(
        '--linear-lr', type=float, default=1e-3,
        help='linear-probe AdamW lr, cosine to 0 (default: 1e-3)')
    parser.add_argument(
        '--linear-batch-size', type=int, default=256,
        help='linear-probe batch (default: 256)')
    parser.add_argument(
        '--linear-weight-decay', type=float, default=1e-4,
        help='linear-probe weight decay (default: 1e-4)')
    parser.add_argument(
        '--seed', type=int, default=0, help='linear-probe seed (default: 0)')
    parser.add_argument(
        '--batch-size',
        type=int,
        help='images per extraction batch and rank (default: the config\'s '
        'val_dataloader.batch_size)')
    parser.add_argument(
        '--num-workers',
        type=int,
        help='loader workers (default: the config\'s val_dataloader)')
    parser.add_argument(
        '--cache-dir',
        help='save the features per split here and reuse them when the '
        'checkpoint content, the data and the feature settings are the same')
    parser.add_argument('--out', help='also write the results to this JSON')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (e.g. '
        'val_dataloader.dataset.indices=1000)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    for name, path in (('CONFIG', args.config),
                       ('CHECKPOINT', args.checkpoint)):
        if not osp.isfile(path):
            parser.error(f'{name} {path!r} is not a file.')
    if args.out is not None and not args.out.endswith('.json'):
        parser.error(f'--out {args.out!r} must end with .json.')
    for name in ('k', 'linear_epochs', 'linear_batch_size', 'batch_size',
                 'num_workers'):
        values = getattr(args, name)
        values = values if isinstance(values, list) else [values]
        low = 0 if name == 'num_workers' else 1
        if any(v is not None and v < low for v in values):
            parser.error(f'--{name.replace("_", "-")} must be >= {low}, got '
                         f'{getattr(args, name)}.')
    if args.temperature <= 0:
        parser.error(f'--temperature must be > 0, got {args.temperature}.')
    return parser, args


def _dataset_cfg(loader, name: str, config: str) -> dict:
    """The dataset of a dataloader config, out of a repeat / class-balance
    wrapper (each image once)."""
    dataset = copy.deepcopy(loader.get('dataset')) if isinstance(
        loader, dict) else None
    while isinstance(dataset, dict) and 'pipeline' not in dataset \
            and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    if not isinstance(dataset, dict) or 'pipeline' not in dataset:
        raise InputError(
            f'CONFIG {config}: `{name}.dataset` must be a dataset config with '
            'a `pipeline` (or a wrapper of one).')
    return dict(dataset)


def loader_cfgs(cfg, args) -> dict:
    """Extraction dataloaders per split: the config's datasets with the val
    pipeline, in order (no shuffle) and evened out across ranks."""
    missing = [
        name for name in ('train_dataloader', 'val_dataloader')
        if not isinstance(cfg.get(name), dict)
    ]
    if missing:
        raise InputError(
            f'CONFIG {args.config} has no {" / ".join(missing)}: frozen '
            'evaluation needs an mmpretrain classification config with both '
            'splits (e.g. configs/benchmarks/mmpretrain/...).')
    val = cfg.val_dataloader
    pipeline = _dataset_cfg(val, 'val_dataloader', args.config)['pipeline']
    loaders = {}
    for split in SPLITS:
        dataset = _dataset_cfg(cfg[f'{split}_dataloader'],
                               f'{split}_dataloader', args.config)
        dataset['pipeline'] = copy.deepcopy(pipeline)  # no augmentation
        loaders[split] = dict(
            batch_size=args.batch_size or val.get('batch_size', 64),
            num_workers=val.get('num_workers', 0)
            if args.num_workers is None else args.num_workers,
            persistent_workers=False,
            drop_last=False,
            # in order and evened out: extract_features gathers per batch
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=True),
            collate_fn=copy.deepcopy(
                val.get('collate_fn', dict(type='pseudo_collate'))),
            dataset=dataset)
    return loaders


def model_cfgs(cfg, args):
    """(backbone, data preprocessor) configs."""
    model = cfg.get('model') or {}
    if not isinstance(model.get('backbone'), dict):
        raise InputError(f'CONFIG {args.config} has no model.backbone.')
    pre = model.get('data_preprocessor') or cfg.get('data_preprocessor')
    return model['backbone'], pre


def _plain(obj):
    """A config (dict) as plain JSON-able data."""
    return json.loads(json.dumps(obj, default=str))


def _device() -> torch.device:
    return torch.device('cuda', torch.cuda.current_device()) \
        if torch.cuda.is_available() else torch.device('cpu')


def build_model(backbone, pre, args):
    path = args.checkpoint
    try:
        state = load_vit_checkpoint(path)
        model = build_frozen_vit(backbone, pre, state, args.feature)
    except (CheckpointError, pickle.UnpicklingError) as e:
        msg = str(e)  # the loader's messages start with the path
        msg = msg[len(path):].lstrip(': ') if msg.startswith(path) else msg
        raise InputError(f'CHECKPOINT {path}: {msg} (CONFIG {args.config})'
                         ) from None
    except ValueError as e:
        raise InputError(f'CONFIG {args.config} / --feature: {e}') from None
    return model.to(_device())


def _check_size(num: int, split: str, args) -> None:
    if num == 0:
        raise InputError(f'CONFIG {args.config}: the {split} dataset is '
                         'empty.')
    if split == 'train' and 'knn' in args.probes and num < max(args.k):
        raise InputError(f'--k {max(args.k)} is more than the {num} train '
                         'images.')


def get_features(cfg, args, is_main: bool) -> dict:
    """Per split: features and labels (rank 0; None elsewhere), where they
    came from and how long it took."""
    from mmengine.dist import broadcast_object_list
    from mmengine.runner import Runner
    loaders = loader_cfgs(cfg, args)
    backbone, pre = model_cfgs(cfg, args)
    cache = keys = None
    if args.cache_dir is not None and is_main:
        cache = FeatureCache(args.cache_dir)
        # everything the features depend on; batch size, workers and the
        # number of ranks change them by rounding at most
        common = dict(
            format=1,
            checkpoint_sha256=file_digest(args.checkpoint),
            backbone=_plain(backbone),
            data_preprocessor=_plain(pre),
            feature=args.feature)
        keys = {
            split: feature_key(
                **common, dataset=_plain(loaders[split]['dataset']))
            for split in SPLITS
        }
    model, out = None, {}
    for split in SPLITS:
        start = time.perf_counter()
        found = cache.load(split, keys[split]) if cache is not None else None
        hit = [found is not None]
        broadcast_object_list(hit)  # every rank extracts, or none
        if hit[0]:
            out[split] = dict(data=found, source='cache')
            if cache is not None:
                out[split]['cache_file'] = cache.path(split, keys[split])
        else:
            if model is None:  # not loaded at all when both are cached
                model = build_model(backbone, pre, args)
            loader = Runner.build_dataloader(loaders[split])
            _check_size(len(loader.dataset), split, args)
            if is_main:
                print(f'Extracting {split} features: {len(loader.dataset)} '
                      f'images, {args.feature} feature')
            data = extract_features(model, loader,
                                    progress=not args.no_progress)
            out[split] = dict(data=data, source='extracted')
            if cache is not None:
                out[split]['cache_file'] = cache.save(
                    split, keys[split], *data,
                    meta=dict(config=args.config,
                              checkpoint=args.checkpoint,
                              dataset=loaders[split]['dataset']))
        out[split]['seconds'] = round(time.perf_counter() - start, 3)
    return out


def evaluate(train, val, args) -> dict:
    """k-NN and linear-probe top-1 (%) on (features, labels) pairs."""
    (xtr, ytr), (xte, yte) = train, val
    _check_size(len(xtr), 'train', args)  # features from the cache
    device = _device()
    xtr, ytr, xte = xtr.to(device), ytr.to(device), xte.to(device)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    res = dict(num_train=len(xtr), num_val=len(xte), feature_dim=xtr.shape[1])
    if 'knn' in args.probes:
        res['knn'] = dict(
            k=args.k,
            temperature=args.temperature,
            top1={
                str(k): top1(
                    knn_classify(xtr, ytr, xte, k=k,
                                 temperature=args.temperature,
                                 num_classes=num_classes), yte)
                for k in args.k
            })
        res['knn_top1'] = res['knn']['top1'][str(args.k[0])]
    if 'linear' in args.probes:
        preds = linear_probe(
            xtr, ytr, xte, epochs=args.linear_epochs,
            batch_size=args.linear_batch_size, lr=args.linear_lr,
            weight_decay=args.linear_weight_decay, seed=args.seed,
            num_classes=num_classes)
        res['linear'] = dict(
            epochs=args.linear_epochs, lr=args.linear_lr,
            batch_size=args.linear_batch_size,
            weight_decay=args.linear_weight_decay, seed=args.seed,
            top1=top1(preds, yte))
        res['linear_top1'] = res['linear']['top1']
    return res


def report(res: dict, args) -> str:
    """The result block."""
    feats = res['features']
    lines = [
        f'Frozen evaluation of {args.checkpoint}',
        f'  config: {args.config}',
        f'  feature: {FEATURE_HELP[args.feature]} after the final norm '
        f'({res["feature_dim"]}-d), val pipeline for both splits',
        '  images: ' + ', '.join(
            f'{res["num_" + s]} {s} ({feats[s]["source"]}, '
            f'{feats[s]["seconds"]:.1f} s)' for s in SPLITS)
    ]
    summary = []
    if 'knn' in res:
        knn = res['knn']['top1']
        lines.append(f'  k-NN: cosine, T={args.temperature}, '
                     + ', '.join(f'k={k}: {knn[str(k)]:.2f}' for k in args.k))
        summary.append('k-NN top-1: ' + '  '.join(
            f'{knn[str(k)]:.2f}' + (f' (k={k})' if len(args.k) > 1 else '')
            for k in args.k))
    if 'linear' in res:
        lin = res['linear']
        lines.append(
            f'  linear: {lin["epochs"]} epochs, AdamW lr {lin["lr"]}, batch '
            f'{lin["batch_size"]}, weight decay {lin["weight_decay"]}, '
            f'seed {lin["seed"]}')
        summary.append(f'linear top-1: {lin["top1"]:.2f}')
    return '\n'.join(lines + ['  '.join(summary)])


def run(args):
    """Evaluate; the results on rank 0, None on the other ranks."""
    from mmengine.dist import get_rank
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    init_distributed(args.launcher, cfg.get('env_cfg', {}).get('dist_cfg'))
    is_main = get_rank() == 0
    feats = get_features(cfg, args, is_main)
    if not is_main:
        return None
    res = dict(config=args.config, checkpoint=args.checkpoint,
               feature=args.feature)
    res.update(evaluate(feats['train']['data'], feats['val']['data'], args))
    res['features'] = {
        s: {k: v for k, v in feats[s].items() if k != 'data'} for s in SPLITS
    }
    print(report(res, args))
    if args.out is not None:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=2)
    return res


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        parser.error(str(e))


if __name__ == '__main__':
    main()
