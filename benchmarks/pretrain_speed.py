"""Cost of a MixedAE pre-training step against mmpretrain's MAE.

Builds each model from the repo's configs (same ViT-B/16, image size and
batch), and times a full training step (data preprocessor, forward,
backward, optimiser) side by side in one process: variants alternate within
every round, after warm-up rounds, and the median is kept. Memory is the
peak CUDA allocation on a GPU, and on the CPU the bytes autograd saves for
backward (activation memory, deterministic). Also reported: the process's
CPU time per step (on the CPU; less sensitive than wall time to other load
on a shared machine, run with ``--threads 1`` for the most robust figure)
and the matmul FLOPs of a step (deterministic, from PyTorch's
FlopCounterMode). Prints a table and writes JSON.

    python benchmarks/pretrain_speed.py                      # CPU, 224 + 448
    python benchmarks/pretrain_speed.py --img-sizes 224 --batch-size 8
    python benchmarks/pretrain_speed.py --device cuda --batch-size 64  # AMP
"""
import argparse
import json
import os
import os.path as osp
import statistics
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from mixedae.utils.profiling import saved_tensor_bytes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = {
    'MAE': 'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
    'MixedAE':
    'configs/mixedae/mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
    'MixedAE-Full V=2':
    'configs/mixedae/mixedae-full-v2_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
    'MixedAE-Full V=4':
    'configs/mixedae/mixedae-full-v4_vit-base-p16_8xb256-accum2-amp-coslr-300e_in1k.py',
    'naive mixing':
    'configs/mixedae/mixedae-naive_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
    # the default before: the same plus HomoCon on a projector
    'MixedAE with feature HomoCon':
    'configs/mixedae/mixedae-feature-homocon_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
    # the one before: a homologous bias, no recognition loss
    'MixedAE (ground-truth prior)':
    'configs/mixedae/mixedae-gt-prior_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
}
# MixedAE as it was before the lean top-k core: the plain autograd graph
# (keeps the selection and the softmax for backward) and the precision
# computed on every step
BEFORE = 'MixedAE (before: plain HomoAtt)'
VARIANTS[BEFORE] = VARIANTS['MixedAE']


def build(config, img_size, device, before=False):
    cfg = Config.fromfile(osp.join(ROOT, config))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    model_cfg = cfg.model
    # the Runner's merge of the top-level data preprocessor into the model
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model_cfg.backbone.img_size = img_size
    model_cfg.neck.num_patches = (img_size // 16)**2
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    if hasattr(model, 'log_step'):  # MixedAE: an iteration not printed
        model.log_step = False
    if before:
        model.log_step = True
        for layer in model.backbone.layers:
            layer.attn.memory_lean = False
    optim_cfg = cfg.optim_wrapper.copy()
    if device == 'cpu':  # AMP needs an accelerator
        optim_cfg.type = 'OptimWrapper'
        optim_cfg.pop('loss_scale', None)
    return model, build_optim_wrapper(model, optim_cfg)


def batch(n, img_size):
    """A collated batch of random uint8 images, as the dataloader gives."""
    from mmengine.dataset import default_collate
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    return default_collate([
        dict(
            inputs=torch.randint(
                0, 256, (3, img_size, img_size), generator=g,
                dtype=torch.uint8),
            data_samples=DataSample()) for _ in range(n)
    ])


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def attention_shape(model, batch_size):
    """(tokens T per encoder sequence, attention elements B' x h x T^2
    summed over the layers) of one training step."""
    bb = model.backbone
    N = bb.num_patches
    if hasattr(bb, 'group_size'):  # MixedAE: Q*V mixed sequences of N + 1
        T = N + 1
        seqs = batch_size // bb.group_size * bb.num_views
    else:  # MAE: the visible patches and the cls token
        T = round(N * (1 - bb.mask_ratio)) + 1
        seqs = batch_size
    heads = bb.layers[0].attn.num_heads
    return T, seqs * heads * T * T * bb.num_layers


def step(model, optim, data, device):
    """One timed training step: (wall seconds, CPU seconds, memory bytes,
    bytes saved for backward in (T, T)-shaped tensors)."""
    T, _ = attention_shape(model, len(data['inputs']))
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    with saved_tensor_bytes(square=T) as saved:
        model.train_step(data, optim)
    sync(device)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    mem = (torch.cuda.max_memory_allocated()
           if device.startswith('cuda') else saved['total'])
    return seconds, cpu_seconds, mem, saved['square']


def step_flops(model, optim, data):
    """Matmul/conv FLOPs of one training step (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        model.train_step(data, optim)
    return counter.get_total_flops()


def profile_vs_mae(models, data, device, top=12):
    """Self CPU time per operator of one training step, each variant minus
    MAE: where the extra cost goes. Printed, not saved."""
    from collections import Counter
    from torch.profiler import ProfilerActivity, profile
    per_op = {}
    for name, (model, optim) in models.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.train_step(data, optim)
        per_op[name] = Counter({
            e.key: e.self_cpu_time_total / 1e3
            for e in prof.key_averages()
        })
    for name in models:
        if name == 'MAE':
            continue
        diff = per_op[name].copy()
        diff.subtract(per_op['MAE'])
        print(f'{name} - MAE, self CPU ms per step, largest differences:')
        for op, ms in diff.most_common(top):
            print(f'  {op:60s} {ms:+9.1f}')


def run(args):
    results = []
    for img_size in args.img_sizes:
        data = batch(args.batch_size, img_size)
        models = {
            name: build(VARIANTS[name], img_size, args.device,
                        before=name == BEFORE)
            for name in args.variants
        }
        flops = {
            name: step_flops(model, optim, data)
            for name, (model, optim) in models.items()
        }
        if args.profile:
            profile_vs_mae(models, data, args.device)
        times = {name: [] for name in models}
        cpu_times = {name: [] for name in models}
        mems, maps = {}, {}
        for r in range(args.warmup + args.repeats):
            for name, (model, optim) in models.items():
                seconds, cpu_seconds, mem, square = step(
                    model, optim, data, args.device)
                if r >= args.warmup:
                    times[name].append(seconds)
                    cpu_times[name].append(cpu_seconds)
                    mems[name], maps[name] = mem, square
        base = statistics.median(times['MAE'])
        cpu_base = statistics.median(cpu_times['MAE'])
        for name in models:
            t = statistics.median(times[name])
            cpu_t = statistics.median(cpu_times[name])
            results.append(
                dict(
                    variant=name,
                    img_size=img_size,
                    batch_size=args.batch_size,
                    device=args.device,
                    sec_per_step=t,
                    ms_per_image=1e3 * t / args.batch_size,
                    time_ratio_vs_mae=t / base,
                    cpu_time_ratio_vs_mae=cpu_t / cpu_base,
                    flops=flops[name],
                    flops_ratio_vs_mae=flops[name] / flops['MAE'],
                    memory_bytes=mems[name],
                    memory_ratio_vs_mae=mems[name] / mems['MAE'],
                    attention_map_bytes_per_element=maps[name] /
                    attention_shape(models[name][0], args.batch_size)[1],
                    step_times=times[name],
                    step_cpu_times=cpu_times[name]))
        del models
    return results


def table(results, device):
    mem = 'peak CUDA memory' if device.startswith('cuda') else \
        'saved activations'
    lines = [
        f'| variant | px | ms / image | time vs MAE | CPU time vs MAE | '
        f'GFLOPs / image | FLOPs vs MAE | {mem} (MiB) | memory vs MAE | '
        'T x T bytes saved / attention element |',
        '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for r in results:
        lines.append(f"| {r['variant']} | {r['img_size']} | "
                     f"{r['ms_per_image']:.1f} | "
                     f"{r['time_ratio_vs_mae']:.3f} | "
                     f"{r['cpu_time_ratio_vs_mae']:.3f} | "
                     f"{r['flops'] / r['batch_size'] / 1e9:.1f} | "
                     f"{r['flops_ratio_vs_mae']:.3f} | "
                     f"{r['memory_bytes'] / 2**20:.0f} | "
                     f"{r['memory_ratio_vs_mae']:.3f} | "
                     f"{r['attention_map_bytes_per_element']:.2f} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device',
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--img-sizes', type=int, nargs='+', default=[224, 448])
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--variants', nargs='+',
                        default=[v for v in VARIANTS if v != BEFORE],
                        choices=list(VARIANTS), metavar='VARIANT',
                        help=f'any of {list(VARIANTS)}')
    parser.add_argument('--threads', type=int,
                        help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--profile', action='store_true',
                        help='print per-operator self CPU time of one step '
                        'of each variant minus MAE')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'work_dirs', 'benchmarks',
                                  'pretrain_speed.json'))
    args = parser.parse_args()
    if 'MAE' not in args.variants:
        args.variants.insert(0, 'MAE')
    if args.batch_size % 4:
        parser.error('--batch-size must be a multiple of the group size 4')
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = run(args)
    print(table(results, args.device))
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                torch=torch.__version__,
                threads=torch.get_num_threads(),
                results=results), f, indent=2)
    print(f'written to {args.out}')


if __name__ == '__main__':
    main()
