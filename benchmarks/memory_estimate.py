"""Estimate the peak GPU memory per GPU of the ImageNet pre-training
configs, at their per-GPU batch, under AMP.

For each config the model is built at full size on the CPU and:

* parameters, gradients and AdamW's two moments are counted exactly
  (fp32: 4 + 4 + 8 bytes per parameter; mmengine's AMP keeps fp32 weights);
* activations are measured, not modelled: the bytes autograd saves for
  backward in one training forward of ``--probe-batch`` images under bf16
  autocast (2-byte activations, as CUDA's fp16 AMP), per image, times the
  config's per-GPU batch (``train_dataloader.batch_size``); the tensors
  shaped like an attention map (T x T) are reported apart, to show that
  homologous attention keeps none;
* a fixed allowance for the CUDA context, cuBLAS workspaces and the
  allocator's fragmentation (``--overhead-gib``, 3 GiB by default) and the
  transient gradients of the layer being back-propagated
  (``--transient``, 10% of the activations).

It is a paper estimate for choosing batch sizes; ``benchmarks/gpu_check.sh``
measures the real peak on a GPU. Prints a table and writes JSON.

    python benchmarks/memory_estimate.py                  # every config
    python benchmarks/memory_estimate.py --configs configs/mixedae/X.py
"""
import argparse
import glob
import json
import os
import os.path as osp

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs/mixedae/*_in1k.py')) +
    [osp.join(ROOT, 'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-300e_'
              'in1k.py')])
GIB = 2**30


def build(config: str):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    model_cfg = cfg.model
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    return cfg, model.train()


def measure_activations(model, batch: int, img_size: int) -> dict:
    """Bytes saved for backward by one bf16-autocast training forward of
    ``batch`` random images, total and in (T, T)-shaped tensors."""
    from mixedae.utils.profiling import saved_tensor_bytes
    x = torch.randn(batch, 3, img_size, img_size)
    patches = (img_size // 16)**2
    model.log_step = False  # MixedAE: no precision diagnostics
    with torch.autocast('cpu', dtype=torch.bfloat16), \
            saved_tensor_bytes(square=patches + 1) as saved:
        losses = model.loss(x, None)
    del losses
    return dict(saved)


def estimate(config: str, probe_batch: int, overhead_gib: float,
             transient: float) -> dict:
    cfg, model = build(config)
    params = sum(p.numel() for p in model.parameters())
    per_gpu = cfg.train_dataloader.batch_size
    accum = cfg.optim_wrapper.get('accumulative_counts', 1)
    img_size = model.backbone.img_size[0] if hasattr(
        model.backbone, 'img_size') else 224
    saved = measure_activations(model, probe_batch, img_size)
    act = saved['total'] / probe_batch * per_gpu
    states = params * (4 + 4 + 8)
    total = states + act * (1 + transient) + overhead_gib * GIB
    return dict(
        config=osp.relpath(config, ROOT), params=params,
        batch_per_gpu=per_gpu, accumulative_counts=accum,
        global_batch_8gpus=8 * per_gpu * accum,
        states_gib=states / GIB, activations_gib=act / GIB,
        attention_map_gib=saved['square'] / probe_batch * per_gpu / GIB,
        activation_bytes_per_image=saved['total'] / probe_batch,
        peak_estimate_gib=total / GIB)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', nargs='+', default=DEFAULT_CONFIGS)
    parser.add_argument('--probe-batch', type=int, default=8,
                        help='images per measured forward (a multiple of G)')
    parser.add_argument('--overhead-gib', type=float, default=3.0)
    parser.add_argument('--transient', type=float, default=0.1)
    parser.add_argument('--threads', type=int)
    parser.add_argument('--out', default=osp.join(
        ROOT, 'work_dirs', 'benchmarks', 'memory_estimate.json'))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [estimate(c, args.probe_batch, args.overhead_gib, args.transient)
            for c in args.configs]
    print('| config | params (M) | batch / GPU x accum | states (GiB) | '
          'activations (GiB) | of which T x T (GiB) | peak estimate (GiB) |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {osp.basename(r['config'])} | {r['params'] / 1e6:.0f} | "
              f"{r['batch_per_gpu']} x {r['accumulative_counts']} | "
              f"{r['states_gib']:.1f} | {r['activations_gib']:.1f} | "
              f"{r['attention_map_gib']:.2f} | "
              f"{r['peak_estimate_gib']:.1f} |")
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(settings=vars(args), results=rows), f, indent=2)
    print(f'written to {args.out}')


if __name__ == '__main__':
    main()
