"""Dense transfer at small scale: random init vs MAE vs MixedAE encoders.

For every seed and method, takes the tiny 1-channel ViT of the Fashion-MNIST
pre-training configs (192-dim, 6 layers, patch 4), pre-trained with
``benchmarks/fashion_mnist/run.py``'s ``pretrain`` (reused from that
benchmark's work dir when a finished checkpoint of the same budget is
there, else pre-trained here), converts it with ``convert_to_vit`` and
fine-tunes it, with the same short schedule and hyper-parameters for every
method, on sets composed from real Fashion-MNIST items
(``tools/dataset_converters/compose_fashion_mnist_dense.py``):

* semantic segmentation: UperNet (the repo's ADE20K benchmark config,
  shrunk by overrides), mIoU over 11 classes (background included) with
  mmseg's ``IoUMetric`` on the composed val split;
* instance segmentation: Mask R-CNN (the repo's COCO benchmark config,
  shrunk), ``bbox_mAP`` / ``segm_mAP`` with mmdet's ``CocoMetric``.

The random-init floor is ``run.random_init(seed)`` (an initialised, untrained
MAE encoder, converted the same way). Canvases are written RGB (stacked
gray); the encoders are 1-channel, so the pipelines load them as grayscale
and normalise with the pre-training statistics (mean 72.94, std 90.02).

Writes ``results.json`` (every run, summary, settings) and ``results.md``
(mean ± sample std over seeds) under ``--out-dir`` after every run and
prints the table.

    .venv/bin/python benchmarks/fashion_mnist_dense/run.py --quick  # ~12 min
    # 3 seeds, ~30 min on two idle cores
    .venv/bin/python benchmarks/fashion_mnist_dense/run.py --threads 2
    .venv/bin/python benchmarks/fashion_mnist_dense/run.py --quick --seeds 0 1 2
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import os.path as osp
import platform
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # projects.dense_vit, mixedae
    sys.path.insert(0, ROOT)


def _load(name: str, rel: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the classification study's package (benchmarks/fashion_mnist/fmnist_study)
sys.path.insert(0, osp.join(ROOT, 'benchmarks', 'fashion_mnist'))
from fmnist_study import cli as cls_cli  # noqa: E402
from fmnist_study import data as cls_data  # noqa: E402
from fmnist_study import methods as cls_methods  # noqa: E402
from fmnist_study import pretrain as cls_pretrain  # noqa: E402
from fmnist_study import report as cls_report  # noqa: E402
from fmnist_study import stats as cls_stats  # noqa: E402

compose = _load('compose_fashion_mnist_dense',
                'tools/dataset_converters/compose_fashion_mnist_dense.py')

SEG_CONFIG = ('configs/benchmarks/mmsegmentation/'
              'upernet_vit-base-p16_mixedae-pre_8xb2-amp-160k_ade20k-'
              '512x512.py')
DET_CONFIG = ('configs/benchmarks/mmdetection/'
              'mask-rcnn_vit-base-p16_mixedae-pre_fpn_8xb2-amp-ms-1x_coco.py')
FLOOR = cls_methods.FLOOR
METRICS = ('mIoU', 'bbox_mAP', 'segm_mAP')
SUMMARY_KEYS = METRICS + ('bbox_mAP_50', 'segm_mAP_50')
MEAN, STD = cls_data.MEAN, cls_data.STD
ARCH = cls_data.ENCODER['arch']  # 192-dim, 6 layers, 3 heads
PATCH = cls_data.ENCODER['patch_size']  # 4: a stride-4 feature map
# 6 layers: the 12-layer (3, 5, 7, 11) taps of the config, halved
SEG_OUT_INDICES = (1, 2, 3, 5)

PRESETS = {
    # 3 seeds x 3 methods x (seg + det), encoders of the classification
    # benchmark's full pre-training (1 epoch of 60k), 300 iterations per
    # task on 48-px canvases (items 20-24 px, cheaper than --quick's 64):
    # 28 min measured with --threads 2 on two idle cores (~3 min per
    # method and seed), plus ~3.5 min per pre-training not found to reuse
    'full': dict(
        seeds=[0, 1, 2], pretrain='full', num_train=800, num_val=200,
        canvas_size=48, grid=2, max_items=3, seg_iters=300, seg_batch=8,
        det_iters=300, det_batch=4),
    # 1 seed x 3 methods x (seg + det), 64-px canvases, half the full run's
    # iterations
    'quick': dict(
        seeds=[0], pretrain='quick', num_train=400, num_val=100,
        canvas_size=64, grid=2, max_items=3, seg_iters=150, seg_batch=8,
        det_iters=150, det_batch=4),
    # for the tests: one 32-px item per canvas, 2 iterations, pre-training
    # (when needed) 2 iterations of 32
    'smoke': dict(
        seeds=[0], pretrain='smoke', pretrain_images=64, num_train=8,
        num_val=4,
        canvas_size=32, grid=1, max_items=1, seg_iters=2, seg_batch=4,
        det_iters=2, det_batch=2),
}
# where benchmarks/fashion_mnist/run.py may have left finished checkpoints
# of each pre-training budget (its iteration count is checked on reuse)
DEFAULT_REUSE = {
    'quick': ['work_dirs/benchmarks/fashion_mnist_quick3',
              'work_dirs/benchmarks/fashion_mnist_quick',
              'work_dirs/benchmarks/fashion_mnist'],
    'full': ['work_dirs/benchmarks/fashion_mnist'],
    'smoke': [],
}
# the fine-tuning recipe, the same for every method and both tasks: the
# configs' AdamW + layer decay, with the lr raised for a short schedule
OPTIM = dict(lr=1e-3, weight_decay=0.05, warmup_ratio=0.1)


def write_results(out_dir: str, table: str, **result) -> dict:
    """``results.json`` (``result``) and ``results.md`` (``table``)."""
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=2)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
    return result


# ------------------------------------------------------------------ encoders
def _finished_checkpoint(work_dir: str, epochs: int) -> Optional[str]:
    """``work_dir/epoch_{epochs}.pth`` if the Runner finished writing it
    (``last_checkpoint`` is written after the file)."""
    path = osp.join(work_dir, f'epoch_{epochs}.pth')
    last = osp.join(work_dir, 'last_checkpoint')
    if not (osp.isfile(path) and osp.isfile(last)):
        return None
    with open(last) as f:
        return path if osp.abspath(f.read().strip()) == osp.abspath(path) \
            else None


def get_encoder(method: str, seed: int, pretrain_budget: dict,
                reuse_dirs: Sequence[str], work_dir: str, data_root: str,
                quiet: bool) -> dict:
    """The converted ViT state of ``method`` / ``seed`` and its origin."""
    from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely
    if method == FLOOR:
        return dict(vit=cls_pretrain.random_init(seed), source='random init')
    tag = f'{cls_methods.slug(method)}_seed{seed}'
    own = osp.join(work_dir, 'pretrain', tag)
    for d in [own] + [osp.join(ROOT, r, tag) for r in reuse_dirs]:
        ckpt = _finished_checkpoint(d, pretrain_budget['epochs'])
        if ckpt is None:
            continue
        state = load_checkpoint_safely(ckpt)
        want = pretrain_budget['epochs'] * (
            (pretrain_budget['pretrain_images'] or 60000)
            // pretrain_budget['batch_size'])
        if state.get('meta', {}).get('iter') != want:
            continue  # another budget
        return dict(vit=convert_to_vit(state), source=osp.relpath(ckpt, ROOT),
                    pretrain_iters=want, pretrain_seconds=None)
    out = cls_pretrain.pretrain(method, seed, pretrain_budget, own,
                                data_root, quiet=quiet)
    vit = convert_to_vit(load_checkpoint_safely(out['checkpoint']))
    return dict(vit=vit, source='pre-trained here: ' +
                osp.relpath(own, ROOT), pretrain_iters=out['iters'],
                pretrain_seconds=out['seconds'])


# ----------------------------------------------------------------- fine-tune
def _set(pipeline: List[dict], type_: str, **kwargs):
    hits = [t for t in pipeline if t['type'] == type_]
    if not hits:
        raise KeyError(f'{type_} is not in the config pipeline '
                       f'{[t["type"] for t in pipeline]}')
    for t in hits:
        t.update(kwargs)


def _backbone(cfg, ckpt: str, img: int, out_indices) -> dict:
    """The config's backbone shrunk to the tiny ViT, loading ``ckpt``
    with the config's init (and its ``allow_missing`` fresh keys)."""
    return dict(
        arch=copy.deepcopy(ARCH), img_size=img, patch_size=PATCH,
        patch_cfg=dict(in_channels=1), out_indices=out_indices,
        init_cfg=dict(cfg.model.backbone.init_cfg, checkpoint=ckpt))


def _common(cfg, work_dir: str, seed: int, iters: int, lr: float,
            quiet: bool):
    """CPU runner settings and the shared short schedule."""
    cfg.work_dir = work_dir
    # the mmseg / mmdet configs name their visualizer 'visualizer', and
    # mmengine hands every later Runner of the process that first instance
    # (with the first run's log folder): one name per run
    cfg.visualizer.name = f'visualizer_{work_dir}'
    cfg.launcher = 'none'
    cfg.load_from, cfg.resume = None, False
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.optim_wrapper.optimizer.weight_decay = OPTIM['weight_decay']
    warm = max(1, round(OPTIM['warmup_ratio'] * iters))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
             end=warm),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warm,
             end=max(iters, warm + 1), eta_min=0.)
    ]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=10**9)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.default_hooks.logger.interval = 20
    cfg.default_hooks.checkpoint = None
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING' if quiet else 'INFO'
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].num_workers = 0  # 2 cores: workers compete with compute
        cfg[loader].persistent_workers = False
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    return cfg


def _train_eval(cfg) -> Dict[str, float]:
    from mmengine.runner import Runner
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    timer = cls_pretrain._train_timer(cfg.work_dir)
    runner.register_hook(timer, priority='VERY_LOW')
    runner.train()
    train_s = time.perf_counter() - start
    loss = runner.message_hub.get_scalar('train/loss').current()
    if not math.isfinite(loss):
        raise FloatingPointError(f'the training loss is {loss}.')
    metrics = runner.val()
    return dict(metrics=metrics, train_seconds=train_s,
                train_loop_seconds=timer.seconds, final_loss=loss,
                eval_seconds=time.perf_counter() - start - train_s)


def finetune_seg(ckpt: str, seed: int, budget: dict, sets: dict,
                 work_dir: str, quiet: bool) -> dict:
    """Tiny UperNet from the repo's ADE20K config; mIoU (%) on val."""
    from mmengine.config import Config
    img = budget['canvas_size']
    cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    model = cfg.model
    model.backbone.update(_backbone(cfg, ckpt, img, SEG_OUT_INDICES))
    d, ch = ARCH['embed_dims'], 96
    # stride-4 patch map: scales 1 .. 1/8 keep the config's strides 4 .. 32
    # the config's Feature2Pyramid (4, 2, 1, 0.5) cannot make the 1/8
    # scale that this stride-4 map needs: mmseg's MultiLevelNeck can
    model.neck = dict(type='MultiLevelNeck', in_channels=[d] * 4,
                      out_channels=ch, scales=[1, 0.5, 0.25, 0.125])
    ncls = len(compose.SEG_METAINFO['classes'])
    model.decode_head.update(in_channels=[ch] * 4, channels=ch,
                             num_classes=ncls)
    model.auxiliary_head.update(in_channels=ch, channels=ch // 2,
                                num_classes=ncls)
    model.data_preprocessor.update(mean=[MEAN], std=[STD], bgr_to_rgb=False,
                                   size=(img, img))
    model.test_cfg = dict(mode='whole')  # a crop is the whole canvas
    dataset = dict(
        type='BaseSegDataset', data_root=sets['ade_root'],
        img_suffix='.png', seg_map_suffix='.png',
        metainfo=compose.SEG_METAINFO, reduce_zero_label=False)
    for loader, split in (('train_dataloader', 'training'),
                          ('val_dataloader', 'validation')):
        pipeline = [t for t in cfg[loader].dataset.pipeline
                    # photometric distortion is for 3-channel images
                    if t['type'] != 'PhotoMetricDistortion']
        _set(pipeline, 'LoadImageFromFile', color_type='grayscale')
        _set(pipeline, 'LoadAnnotations', reduce_zero_label=False)
        cfg[loader].dataset = dict(
            dataset, pipeline=pipeline,
            data_prefix=dict(img_path=f'images/{split}',
                             seg_map_path=f'annotations/{split}'))
    train_pipe = cfg.train_dataloader.dataset.pipeline
    _set(train_pipe, 'RandomResize', scale=(4 * img, img))  # x0.5 .. x2
    _set(train_pipe, 'RandomCrop', crop_size=(img, img))
    _set(cfg.val_dataloader.dataset.pipeline, 'Resize', scale=(4 * img, img))
    cfg.train_dataloader.batch_size = budget['seg_batch']
    cfg.val_dataloader.batch_size = 16
    cfg = _common(cfg, work_dir, seed, budget['seg_iters'], budget['lr'],
                  quiet)
    out = _train_eval(cfg)
    out['mIoU'] = float(out.pop('metrics')['mIoU'])
    return out


def finetune_det(ckpt: str, seed: int, budget: dict, sets: dict,
                 work_dir: str, quiet: bool) -> dict:
    """Tiny Mask R-CNN from the repo's COCO config; box / mask AP (%)."""
    from mmengine.config import Config
    img = budget['canvas_size']
    cfg = Config.fromfile(osp.join(ROOT, DET_CONFIG))
    model = cfg.model
    model.backbone.update(
        _backbone(cfg, ckpt, img, (ARCH['num_layers'] - 1, )))
    d, ch = ARCH['embed_dims'], 64
    # stride-4 patch map: the pyramid's scales 1 and 1/2 give strides 4 and
    # 8; FPN's extra levels (max-pool) give 16, 32, 64 for the anchors
    model.neck[0].update(in_channels=d, scales=(1, 0.5))
    model.neck[1].update(in_channels=[d, d], out_channels=ch, num_outs=5)
    # items are 20-32 px: anchors 16 .. 256 px instead of 32 .. 512
    model.rpn_head.update(in_channels=ch, feat_channels=ch)
    model.rpn_head.anchor_generator.scales = [4]
    model.roi_head.bbox_roi_extractor.out_channels = ch
    model.roi_head.mask_roi_extractor.out_channels = ch
    ncls = len(compose.COCO_METAINFO['classes'])
    model.roi_head.bbox_head.update(in_channels=ch, fc_out_channels=256,
                                    num_classes=ncls)
    model.roi_head.mask_head.update(in_channels=ch, conv_out_channels=ch,
                                    num_convs=2, num_classes=ncls)
    model.train_cfg.rcnn.sampler.num = 64
    # at most 3 items a canvas: fewer proposals and detections than COCO's
    model.test_cfg.rpn.update(nms_pre=300, max_per_img=300)
    model.test_cfg.rcnn.max_per_img = 30
    # pad to multiples of 16 (not 32): 48-px canvases stay 48 px
    model.data_preprocessor.update(mean=[MEAN], std=[STD], bgr_to_rgb=False,
                                   pad_size_divisor=16)
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val')):
        cfg[loader].dataset.update(
            data_root=sets['coco_root'], metainfo=compose.COCO_METAINFO,
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'images/{split}/'))
        _set(cfg[loader].dataset.pipeline, 'LoadImageFromFile',
             color_type='grayscale')
    cfg.train_dataloader.dataset.filter_cfg.min_size = 8
    # the multi-scale recipe (short side 480-800 of 800) scaled to canvases
    short = sorted({int(img * s) for s in (0.75, 0.875, 1.0)})
    _set(cfg.train_dataloader.dataset.pipeline, 'RandomChoiceResize',
         scales=[(img * 5 // 3, s) for s in short])
    _set(cfg.val_dataloader.dataset.pipeline, 'Resize',
         scale=(img * 5 // 3, img))
    cfg.train_dataloader.batch_size = budget['det_batch']
    cfg.val_dataloader.batch_size = 8
    cfg.val_evaluator.ann_file = sets['coco_val_ann']
    cfg = _common(cfg, work_dir, seed, budget['det_iters'], budget['lr'],
                  quiet)
    out = _train_eval(cfg)
    metrics = out.pop('metrics')
    for key in ('bbox_mAP', 'segm_mAP', 'bbox_mAP_50', 'segm_mAP_50'):
        out[key] = 100. * float(metrics[f'coco/{key}'])
    return out


# -------------------------------------------------------------------- report
def markdown(summary: Dict[str, dict], settings: dict) -> str:
    """The results table: mean ± std over seeds."""
    lines = ['| method | mIoU (%) | AP^box (%) | AP^mask (%) |',
             '|---|---:|---:|---:|']
    for method, stats in summary.items():
        lines.append('| {} | {} | {} | {} |'.format(
            method, *(cls_report.format_stat(stats.get(k)) for k in METRICS)))
    s = settings
    lines += [
        '',
        f"Composed Fashion-MNIST canvases ({s['canvas_size']} px, "
        f"{s['grid']}x{s['grid']} cells, 1-{s['max_items']} items): "
        f"{s['num_train']} train / {s['num_val']} val images (val items "
        f"from the test split); {len(s['seeds'])} seed(s) {s['seeds']} "
        '(mean ± sample std). Encoders: the 6-layer 192-dim patch-4 ViT, '
        f"pre-trained with the `{s['pretrain']}` budget of "
        'benchmarks/fashion_mnist/run.py. UperNet: '
        f"{s['seg_iters']} iterations of {s['seg_batch']}; Mask R-CNN: "
        f"{s['det_iters']} iterations of {s['det_batch']}; AdamW lr "
        f"{s['lr']}, layer decay as the configs, 10% warm-up then "
        'cosine, identical for every method. mIoU over 11 classes '
        '(background included); AP = COCO mAP@[.5:.95].',
    ]
    return '\n'.join(lines) + '\n'


# -------------------------------------------------------------------- driver
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--quick', action='store_true',
                      help='1 seed, 400 canvases, 150 iterations per task')
    mode.add_argument('--smoke', action='store_true',
                      help='seconds: a plumbing check for the tests')
    parser.add_argument('--seeds', type=int, nargs='+')
    parser.add_argument('--methods', nargs='+',
                        choices=list(cls_methods.METHODS),
                        default=['MAE', 'MixedAE'],
                        help='pre-training methods (random init is added)')
    parser.add_argument('--no-floor', action='store_true',
                        help='skip the random-init encoder')
    parser.add_argument('--tasks', nargs='+', choices=['seg', 'det'],
                        default=['seg', 'det'])
    parser.add_argument('--reuse-dirs', nargs='*',
                        help='work dirs of benchmarks/fashion_mnist/run.py '
                        'to take finished checkpoints from (default: per '
                        'preset; none disables reuse)')
    parser.add_argument('--out-dir', default=osp.join(
        'work_dirs', 'benchmarks', 'fashion_mnist_dense'))
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'fashion_mnist'))
    for key in ('num_train', 'num_val', 'canvas_size', 'seg_iters',
                'seg_batch', 'det_iters', 'det_batch'):
        parser.add_argument('--' + key.replace('_', '-'), type=int,
                            help='override the preset')
    parser.add_argument('--lr', type=float,
                        help=f"fine-tuning lr of both tasks (default "
                        f"{OPTIM['lr']})")
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads (default 1: on a machine '
                        'shared with other jobs more threads can be far '
                        'slower; 2 may help on two idle cores)')
    parser.add_argument('--verbose', action='store_true',
                        help="show the Runners' logs")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return _main(args)
    finally:  # the caller (e.g. pytest) keeps its own setting
        torch.set_num_threads(threads)


def _main(args) -> dict:
    preset = 'smoke' if args.smoke else 'quick' if args.quick else 'full'
    budget = dict(copy.deepcopy(PRESETS[preset]), lr=OPTIM['lr'])
    for key in list(budget):
        if getattr(args, key, None) is not None:
            budget[key] = getattr(args, key)
    if min(budget['num_train'], budget['num_val']) < 1:
        raise ValueError('--num-train and --num-val must be positive.')
    if not budget['lr'] > 0:
        raise ValueError(f"--lr must be positive, got {budget['lr']}.")
    pre_budget = dict(cls_cli.PRESETS[budget['pretrain']])
    if 'pretrain_images' in budget:
        pre_budget['pretrain_images'] = budget['pretrain_images']
    pre_budget.setdefault('finetune_images', None)
    reuse = (DEFAULT_REUSE[budget['pretrain']]
             if args.reuse_dirs is None else args.reuse_dirs)
    for name in ('train-images-idx3-ubyte', 't10k-images-idx3-ubyte'):
        if not osp.exists(osp.join(args.data_root, name)):
            raise FileNotFoundError(
                f'Fashion-MNIST is missing in {args.data_root} ({name}): run '
                '`make data` or pass --data-root.')
    if args.threads:
        torch.set_num_threads(args.threads)
    import mixedae  # noqa: F401  (registers the modules)
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    MMLogger.get_instance('fashion_mnist_dense_benchmark',
                          log_level='INFO' if args.verbose else 'WARNING')
    quiet = not args.verbose
    out_dir = osp.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    total = time.perf_counter()
    # one composed set for every method and seed (seeds vary the fine-tune)
    sets = compose.compose_fashion_mnist_dense(
        args.data_root, osp.join(out_dir, 'data'),
        num_train=budget['num_train'], num_val=budget['num_val'],
        canvas_size=budget['canvas_size'], seed=0, grid=budget['grid'],
        max_items=budget['max_items'])
    methods = ([] if args.no_floor else [FLOOR]) + list(args.methods)
    settings = dict(
        preset=preset, **budget, methods=methods, tasks=args.tasks,
        pretrain_budget=pre_budget, reuse_dirs=list(reuse),
        optim=dict(OPTIM, lr=budget['lr'], optimizer='AdamW',
                   seg_layer_decay=0.65, det_layer_decay=0.75, drop_path=0.1),
        input='grayscale (1 channel), mean 72.94, std 90.02',
        seg='UperNet, MultiLevelNeck scales 1..1/8 (strides 4..32), 96 ch, '
        f'ViT taps {SEG_OUT_INDICES}, whole-image inference',
        det='Mask R-CNN, SimpleFeaturePyramid scales (1, 0.5) + FPN 64 ch '
        '(strides 4..64), anchor scale 4, 64 RoIs/img, 2-conv mask head, '
        'pad to 16, <= 30 detections/img')
    machine = dict(
        cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
        torch=torch.__version__, python=platform.python_version())
    runs: List[dict] = []

    def save():
        summary = cls_stats.summarise(runs, methods, SUMMARY_KEYS)
        table = markdown(summary, settings)
        return write_results(
            out_dir, table, settings=settings, machine=machine, runs=runs,
            summary=summary, total_seconds=time.perf_counter() - total), table

    for seed in budget['seeds']:
        for method in methods:
            tag = f'{cls_methods.slug(method)}_seed{seed}'
            work_dir = osp.join(out_dir, tag)
            os.makedirs(work_dir, exist_ok=True)
            print(f'[{time.perf_counter() - total:6.0f} s] {method}, seed '
                  f'{seed}: ', end='', flush=True)
            enc = get_encoder(method, seed, pre_budget, reuse, out_dir,
                              args.data_root, quiet)
            ckpt = osp.join(work_dir, 'vit_init.pth')
            torch.save(dict(state_dict=enc.pop('vit')), ckpt)
            run = dict(method=method, seed=seed, encoder=enc)
            if 'seg' in args.tasks:
                seg = finetune_seg(ckpt, seed, budget, sets,
                                   osp.join(work_dir, 'seg'), quiet)
                run.update(mIoU=seg.pop('mIoU'), seg=seg)
                print(f"mIoU {run['mIoU']:.1f} "
                      f"({seg['train_seconds']:.0f}+"
                      f"{seg['eval_seconds']:.0f} s), ", end='', flush=True)
            if 'det' in args.tasks:
                det = finetune_det(ckpt, seed, budget, sets,
                                   osp.join(work_dir, 'det'), quiet)
                for key in ('bbox_mAP', 'segm_mAP', 'bbox_mAP_50',
                            'segm_mAP_50'):
                    run[key] = det.pop(key)
                run['det'] = det
                print(f"AP box {run['bbox_mAP']:.1f} mask "
                      f"{run['segm_mAP']:.1f} ({det['train_seconds']:.0f}+"
                      f"{det['eval_seconds']:.0f} s)", end='', flush=True)
            print(f"  [encoder: {enc['source']}]", flush=True)
            runs.append(run)
            save()
    result, table = save()
    print(f'\n{table}\nWrote {osp.join(out_dir, "results.json")} and '
          f'results.md in {result["total_seconds"]:.0f} s.')
    return result


if __name__ == '__main__':
    main()
