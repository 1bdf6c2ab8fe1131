"""The command line: which runs to make, the loop over (seed, method) that
makes the missing ones, and the report."""
import argparse
import datetime
import os
import os.path as osp
import platform
import time
from typing import List

import torch

from .data import load_split
from .evaluate import DENSE, METRICS, evaluate
from .methods import FLOOR, METHODS, ROOT, slug
from .plots import plot_differences
from .pretrain import pretrain, random_init, recognition
from .report import markdown
from .stats import component_differences, paired_differences, summarise
from .store import (RESULTS, budget_name, load_run, run_key, run_path,
                    save_run)

PRESETS = {
    # The study: the demo's schedule, 3 epochs of the 60k images with the
    # first one warm-up (--epochs 12: 4x the budget), every metric; each
    # (method, seed) is kept in the repository, so it completes across
    # sittings.
    'study': dict(
        seeds=[0, 1, 2], pretrain_images=None, epochs=3, batch_size=128,
        warmup_fraction=1 / 3, eval_train_images=10000,
        eval_test_images=10000, finetune_iters=200, finetune_batch_size=64,
        linear_epochs=100, dense_train_canvases=1000,
        dense_val_canvases=500),
    # 1 epoch of 60k, 3 seeds (99 min measured on 2 idle cores)
    'full': dict(
        seeds=[0, 1, 2], pretrain_images=None, epochs=1, batch_size=128,
        warmup_fraction=0.1, eval_train_images=10000, eval_test_images=10000,
        finetune_iters=200, finetune_batch_size=64, linear_epochs=100,
        dense_train_canvases=1000, dense_val_canvases=500),
    # 1 seed, 200 iterations per pre-training: ~8 min measured
    'quick': dict(
        seeds=[0], pretrain_images=12800, epochs=2, batch_size=128,
        warmup_fraction=0.1, eval_train_images=2000, eval_test_images=1000,
        finetune_iters=30, finetune_batch_size=64, linear_epochs=100,
        dense_train_canvases=200, dense_val_canvases=100),
    # for the tests: seconds
    'smoke': dict(
        seeds=[0], pretrain_images=128, epochs=1, batch_size=32,
        warmup_fraction=0.1, eval_train_images=200, eval_test_images=100,
        finetune_iters=3, finetune_batch_size=16, linear_epochs=5,
        finetune_images=256, dense_train_canvases=20,
        dense_val_canvases=10),
}
DEFAULT_METHODS = ['MAE', 'naive mixing', 'MixedAE',
                   'MixedAE (ground-truth prior)', 'MixedAE (paper reading)']
RECOGNITION_IMAGES = 512  # test images for the end-of-training precision


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='MAE vs naive mixing vs MixedAE on Fashion-MNIST, on '
        'the CPU: pre-train, then k-NN, linear probe and fine-tune.',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--study', action='store_true',
                      help='the study: 3 seeds, 3 epochs of 60k (the demo '
                      'schedule; --epochs 12 for 4x), every metric, each '
                      'run kept under benchmarks/fashion_mnist/results/')
    mode.add_argument('--quick', action='store_true',
                      help='~10 min budget: 1 seed, a subset, short runs')
    mode.add_argument('--smoke', action='store_true',
                      help='seconds: a plumbing check for the tests')
    parser.add_argument('--seeds', type=int, nargs='+')
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        metavar='METHOD', default=DEFAULT_METHODS,
                        help=f'any of {list(METHODS)}')
    parser.add_argument('--metrics', nargs='+', choices=METRICS,
                        default=list(METRICS))
    parser.add_argument('--no-floor', action='store_true',
                        help='skip the random-init encoder')
    parser.add_argument('--report', action='store_true',
                        help='train nothing: tables and plot from the '
                        'stored runs')
    parser.add_argument('--out-dir',
                        help='work dirs and the report; default work_dirs/'
                        'benchmarks/fashion_mnist[_study]')
    parser.add_argument('--results-dir',
                        help='the per-run result files; default benchmarks/'
                        'fashion_mnist/results/<epochs>ep with --study, '
                        'OUT_DIR/runs otherwise (with --budgets: the folder '
                        'holding one <epochs>ep folder per budget)')
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'fashion_mnist'))
    parser.add_argument('--threads', type=int,
                        help='torch threads (1 each for two runs side by '
                        'side on 2 cores)')
    for key in ('pretrain_images', 'epochs', 'batch_size', 'finetune_images',
                'eval_train_images', 'eval_test_images', 'finetune_iters',
                'finetune_batch_size', 'linear_epochs', 'dense_train_canvases',
                'dense_val_canvases'):
        parser.add_argument('--' + key.replace('_', '-'), type=int,
                            help='override the preset')
    parser.add_argument('--budgets', type=int, nargs='+',
                        help='with --study --report: the methods at these '
                        'budgets (epochs) side by side, from their stored '
                        'runs (budgets.md, budgets.png)')
    parser.add_argument('--figures',
                        help='where the plots go (default: OUT_DIR)')
    parser.add_argument('--verbose', action='store_true',
                        help="show the Runners' logs")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.budgets:
        if not (args.study and args.report):
            raise SystemExit('--budgets goes with --study --report.')
        return compare_budgets(args)
    preset = ('smoke' if args.smoke else 'quick' if args.quick else
              'study' if args.study else 'full')
    budget = dict(dict(finetune_images=None), **PRESETS[preset])
    for key in list(budget):
        if getattr(args, key, None) is not None:
            budget[key] = getattr(args, key)
    budget['seeds'] = list(budget['seeds'])
    out_dir = args.out_dir or osp.join(
        'work_dirs', 'benchmarks',
        'fashion_mnist_study' if preset == 'study' else 'fashion_mnist')
    if preset == 'study':
        out_dir = osp.join(out_dir, budget_name(budget))
    results_dir = args.results_dir or (
        osp.join(RESULTS, budget_name(budget)) if preset == 'study' else
        osp.join(out_dir, 'runs'))
    for name in ('train-images-idx3-ubyte', 't10k-images-idx3-ubyte'):
        if not args.report and not osp.exists(osp.join(args.data_root, name)):
            raise FileNotFoundError(
                f'Fashion-MNIST is missing in {args.data_root} ({name}): run '
                '`make data` or pass --data-root.')
    if args.threads:
        torch.set_num_threads(args.threads)
    import mixedae  # noqa: F401  (registers the modules)
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely
    init_default_scope('mmpretrain')
    # the current logger until the first Runner makes its own
    MMLogger.get_instance(
        'fashion_mnist_benchmark',
        log_level='INFO' if args.verbose else 'WARNING')

    os.makedirs(out_dir, exist_ok=True)
    methods = ([] if args.no_floor else [FLOOR]) + list(args.methods)
    settings = dict(preset=preset, **budget, methods=methods,
                    metrics=args.metrics, confidence=0.95,
                    results_dir=osp.relpath(results_dir, ROOT))
    machine = dict(
        cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
        torch=torch.__version__, python=platform.python_version(),
        processor=platform.processor() or platform.machine())
    runs: List[dict] = []
    missing: List[str] = []
    start = time.perf_counter()
    data = None
    for seed in budget['seeds']:
        for method in methods:
            tag = f'{slug(method)}_seed{seed}'
            work_dir = osp.abspath(osp.join(out_dir, tag))
            path = run_path(results_dir, method, seed)
            key = run_key(method, budget)
            stored = load_run(path, key)
            if stored is not None and set(args.metrics) <= set(stored):
                runs.append(stored)
                continue
            if args.report:
                missing.append(tag)
                continue
            print(f'[{time.perf_counter() - start:7.0f} s] {method}, '
                  f'seed {seed}: ', end='', flush=True)
            if data is None:
                data = dict(
                    train=load_split(args.data_root, False,
                                     budget['eval_train_images']),
                    test=load_split(args.data_root, True,
                                    budget['eval_test_images']))
            final = osp.join(work_dir, f"epoch_{budget['epochs']}.pth")
            if stored is not None and (method == FLOOR or osp.exists(final)):
                # an earlier sitting's run, for other metrics: evaluate
                # only the missing ones
                run = stored
                print('stored pre-training, ', end='', flush=True)
            elif method == FLOOR:
                run = dict(method=method, seed=seed, pretrain_seconds=None,
                           pretrain_iters=0)
            else:
                out = pretrain(method, seed, budget, work_dir,
                               args.data_root, quiet=not args.verbose)
                run = dict(method=method, seed=seed,
                           pretrain_seconds=out['seconds'],
                           pretrain_iters=out['iters'],
                           resumed_from=out['resumed_from'],
                           final_scalars=out['final_scalars'],
                           curves=out['curves'])
                images = load_split(args.data_root, True,
                                    RECOGNITION_IMAGES)[0]
                run['recognition'] = recognition(method, final, images)
                print(f"pre-trained {out['iters']} iters "
                      f"({out['seconds'] or 0:.0f} s), ", end='',
                      flush=True)
            vit = random_init(seed) if method == FLOOR else \
                convert_to_vit(load_checkpoint_safely(final))
            todo = [m for m in args.metrics if m not in run]
            run.update(evaluate(vit, seed, budget, data,
                                osp.join(work_dir, 'finetune'),
                                args.data_root, quiet=not args.verbose,
                                metrics=todo))
            print(', '.join(f'{k} {run[k]:.1f}' for k in args.metrics) +
                  f" ({run['eval_seconds']:.0f} s)", flush=True)
            run.update(key=key, machine=machine,
                       date=datetime.date.today().isoformat())
            save_run(path, run)
            runs.append(run)
    result = report(runs, methods, args, settings, out_dir, missing)
    print(f"\n{result['table']}\nWrote {osp.join(out_dir, 'results.md')} "
          f'in {time.perf_counter() - start:.0f} s; runs in {results_dir}.')
    if missing:
        print(f'Not yet run: {", ".join(missing)}')
    return result


def report(runs, methods, args, settings, out_dir, missing) -> dict:
    """The tables (``results.md``) and the plot of the paired differences
    (``differences.png``) in ``out_dir``, from ``runs``."""
    keys = METRICS[:3] + DENSE
    summary = summarise(runs, methods, keys + ('pretrain_seconds', ))
    diffs = paired_differences(runs, methods, keys) \
        if 'MAE' in methods else {}
    diffs.pop(FLOOR, None)
    parts = component_differences(runs, methods, keys)
    table = markdown(summary, settings, diffs, runs, parts)
    classification = [m for m in args.metrics if m in METRICS[:3]]
    if diffs and classification:
        plot_differences(
            diffs, classification,
            osp.join(args.figures or out_dir, 'differences.png'),
            f"Fashion-MNIST, {settings['epochs']} epoch(s) of "
            f"{settings['pretrain_images'] or 60000} images\npaired "
            'difference to MAE (same seed), mean and 95% CI')
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
    return dict(settings=settings, runs=runs, summary=summary,
                differences=diffs, component_differences=parts,
                missing=missing, table=table)


def compare_budgets(args) -> dict:
    """``--study --report --budgets 3 12``: every method at every budget
    from the stored runs, a table (``budgets.md`` in the study's work dir)
    and a plot (``budgets.png``)."""
    from .plots import plot_budgets
    from .report import NAMES, budget_seeds, budget_table
    from .stats import mean_ci
    methods = list(args.methods)
    seeds = args.seeds or PRESETS['study']['seeds']
    by_budget = {}
    for epochs in args.budgets:
        budget = dict(PRESETS['study'], epochs=epochs, finetune_images=None)
        results = osp.join(args.results_dir or RESULTS,
                           budget_name(budget))
        by_budget[epochs] = [
            run for method in methods for seed in seeds
            for run in [load_run(run_path(results, method, seed),
                                 run_key(method, budget))] if run]
    keys = [m for m in METRICS[:3] + DENSE
            if any(m in r for runs in by_budget.values() for r in runs)]
    points = {m: {e: {k: mean_ci([r[k] for r in runs if r['method'] == m
                                  and k in r])
                      for k in keys if any(r['method'] == m and k in r
                                           for r in runs)}
                  for e, runs in by_budget.items()} for m in methods}
    out_dir = args.out_dir or osp.join('work_dirs', 'benchmarks',
                                       'fashion_mnist_study')
    os.makedirs(out_dir, exist_ok=True)
    table = '\n'.join(budget_table(by_budget, methods, keys)) + '\n'
    with open(osp.join(out_dir, 'budgets.md'), 'w') as f:
        f.write(table)
    plot_budgets(points, keys, NAMES,
                 osp.join(args.figures or out_dir, 'budgets.png'),
                 'Fashion-MNIST study: each method against the pre-training '
                 'budget (mean and 95% CI over the seeds run: ' +
                 budget_seeds(by_budget, methods) + ')')
    print(table)
    return dict(table=table, runs=by_budget, points=points)
