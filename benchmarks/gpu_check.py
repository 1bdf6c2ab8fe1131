"""The prepared GPU check: MixedAE against mmpretrain's MAE on one CUDA GPU.

For ViT-B/16 at 224 px under AMP (fp16 with dynamic loss scaling, and
bf16), at a per-GPU batch of 64 and at the largest batch of
``--batches`` that fits both models, it runs real training steps (data
preprocessor, forward, backward, AdamW through mmengine's
AmpOptimWrapper), alternating the models, and prints per-image time and
peak memory with their ratios against MAE, and any non-finite loss or
gradient. It also:

* runs MixedAE's forward and backward on a non-logged iteration under
  ``torch.cuda.set_sync_debug_mode('warn')`` and prints every
  device-to-host sync it caught (there should be none);
* takes one step of MixedAE-Full V=2 and V=4 at their configs' per-GPU
  batch and prints the peak memory, next to the estimate in the config.

    bash benchmarks/gpu_check.sh              # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --tiny   # plumbing, CPU
"""
import argparse
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from pretrain_speed import ROOT, VARIANTS, batch  # noqa: E402

TINY = dict(embed_dims=64, num_layers=2, num_heads=2,
            feedforward_channels=128)


def make(name, device, dtype, tiny):
    """A model of ``VARIANTS[name]``'s config, its AMP optim wrapper on
    ``device`` and the config's per-GPU batch."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(osp.join(ROOT, VARIANTS[name]))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    m = cfg.model
    m.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if tiny:  # the plumbing, not the numbers
        m.backbone.update(arch=TINY, img_size=32, patch_size=8)
        m.neck.update(num_patches=16, patch_size=8, embed_dim=64,
                      decoder_embed_dim=32, decoder_depth=1,
                      decoder_num_heads=2)
        m.head.patch_size = 8
        if m.head.get('homocon_loss') and m.head.homocon_loss.get(
                'projector'):
            m.head.homocon_loss.projector.update(
                in_channels=64, hid_channels=64, out_channels=32)
    model = MODELS.build(m)
    model.init_weights()
    model.to(device).train()
    optim = dict(type='AmpOptimWrapper', dtype=dtype,
                 optimizer=dict(type='AdamW', lr=1.5e-4, betas=(0.9, 0.95),
                                weight_decay=0.05))
    if dtype == 'float16':
        optim['loss_scale'] = 'dynamic'
    if device == 'cpu':  # mmengine's AMP needs CUDA: plain fp32 steps
        optim = dict(type='OptimWrapper', optimizer=optim['optimizer'])
    return model, build_optim_wrapper(model, optim), \
        cfg.train_dataloader.batch_size


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def timed_step(model, optim, data, device):
    """(seconds, peak bytes, non-finite findings) of one training step."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    log_vars = model.train_step(data, optim)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.startswith(
        'cuda') else 0
    bad = [k for k, v in log_vars.items() if not math.isfinite(float(v))]
    bad += [n for n, p in model.named_parameters()
            if p.grad is not None and not torch.isfinite(p.grad).all()]
    return seconds, peak, bad


def fits(models, data, device) -> bool:
    try:
        for model, optim in models.values():
            timed_step(model, optim, data, device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        for model, _ in models.values():
            model.zero_grad(set_to_none=True)
        if device.startswith('cuda'):
            torch.cuda.empty_cache()


def compare(models, bs, args, img_size):
    data = batch(bs, img_size)
    times = {n: [] for n in models}
    peaks, bad = {}, {}
    for r in range(args.warmup + args.steps):
        for name, (model, optim) in models.items():
            seconds, peak, nonfinite = timed_step(model, optim, data,
                                                  args.device)
            if r >= args.warmup:
                times[name].append(seconds)
            peaks[name] = max(peaks.get(name, 0), peak)
            bad.setdefault(name, set()).update(nonfinite)
    rows = []
    for name in models:
        t = statistics.median(times[name])
        rows.append(dict(
            variant=name, batch=bs, ms_per_image=1e3 * t / bs,
            time_ratio=t / statistics.median(times['MAE']),
            peak_gib=peaks[name] / 2**30,
            peak_ratio=peaks[name] / max(peaks['MAE'], 1),
            nonfinite=sorted(bad[name])[:5]))
    return rows


def count_syncs(model, data, device) -> list:
    """Device-to-host syncs in MixedAE's forward and backward on an
    iteration the logger does not print (empty: none)."""
    if not device.startswith('cuda'):
        return ['(not checked: needs CUDA)']
    model.log_step = False
    inputs = model.data_preprocessor(data, True)['inputs']
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with torch.autocast('cuda', dtype=torch.bfloat16):
                losses = model.loss(inputs, None)
            loss, _ = model.parse_losses(losses)
            loss.backward()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    model.zero_grad(set_to_none=True)
    model.log_step = True
    return [str(w.message).split('\n')[0] for w in caught
            if 'synchroniz' in str(w.message)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--dtypes', nargs='+',
                        default=['float16', 'bfloat16'])
    parser.add_argument('--batches', type=int, nargs='+',
                        default=[1024, 768, 512, 384, 256, 128],
                        help='candidates for the largest batch, tried from '
                        'the first')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--tiny', action='store_true',
                        help='tiny models at 32 px: a plumbing check')
    parser.add_argument('--out', default=osp.join(
        'work_dirs', 'benchmarks', 'gpu_check.json'))
    args = parser.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('no CUDA device: this check needs a GPU (--device cpu '
                     '--tiny checks the plumbing only)')
    torch.manual_seed(0)
    img_size = 32 if args.tiny else 224
    report = dict(torch=torch.__version__,
                  gpu=torch.cuda.get_device_name()
                  if args.device.startswith('cuda') else 'cpu',
                  results=[], syncs=None, full=[])
    for dtype in args.dtypes:
        models = {n: make(n, args.device, dtype, args.tiny)[:2]
                  for n in ('MAE', 'MixedAE')}
        largest = next((b for b in args.batches
                        if fits(models, batch(b, img_size), args.device)),
                       None)
        for bs in sorted({64, largest} - {None}):
            for row in compare(models, bs, args, img_size):
                report['results'].append(dict(dtype=dtype, **row))
        if report['syncs'] is None:
            report['syncs'] = count_syncs(models['MixedAE'][0],
                                          batch(64, img_size), args.device)
        del models
        if args.device.startswith('cuda'):
            torch.cuda.empty_cache()
    for name in ('MixedAE-Full V=2', 'MixedAE-Full V=4'):
        model = optim = bs = None
        try:
            model, optim, bs = make(name, args.device, 'bfloat16',
                                    args.tiny)
            _, peak, bad = timed_step(model, optim,
                                      batch(8 if args.tiny else bs,
                                            img_size), args.device)
            report['full'].append(dict(variant=name, batch=bs,
                                       peak_gib=peak / 2**30,
                                       nonfinite=bad[:5]))
        except torch.cuda.OutOfMemoryError:
            report['full'].append(dict(variant=name, batch=bs,
                                       peak_gib=None, nonfinite=['OOM']))
        finally:
            model = optim = None
            if args.device.startswith('cuda'):
                torch.cuda.empty_cache()

    print(f"{report['gpu']}, torch {report['torch']}")
    print('| AMP | variant | batch / GPU | ms / image | time vs MAE | '
          'peak memory (GiB) | memory vs MAE | non-finite |')
    print('|---|---|---:|---:|---:|---:|---:|---|')
    for r in report['results']:
        print(f"| {r['dtype']} | {r['variant']} | {r['batch']} | "
              f"{r['ms_per_image']:.2f} | {r['time_ratio']:.3f} | "
              f"{r['peak_gib']:.1f} | {r['peak_ratio']:.3f} | "
              f"{', '.join(r['nonfinite']) or 'none'} |")
    for r in report['full']:
        peak = 'OOM' if r['peak_gib'] is None else f"{r['peak_gib']:.1f} GiB"
        print(f"{r['variant']}, bf16, batch {r['batch']} / GPU: peak {peak}"
              f"; non-finite: {', '.join(r['nonfinite']) or 'none'}")
    print('host syncs in a non-logged MixedAE forward + backward: ' +
          ('none' if not report['syncs'] else '; '.join(report['syncs'])))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == '__main__':
    main()
