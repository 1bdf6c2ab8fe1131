"""Plot a MixedAE pre-training's losses and per-layer homologous precision
against the iteration, from the run's ``scalars.json`` (or a study run kept
in ``benchmarks/fashion_mnist/results/``), as a labelled PNG.

    python tools/analysis_tools/plot_training_curves.py \
        work_dirs/demo/*/vis_data/scalars.json --out work_dirs/demo/curves.png
    # several runs side by side (one line each, labelled):
    python tools/analysis_tools/plot_training_curves.py RUN1/scalars.json \
        benchmarks/fashion_mnist/results/3ep/mixedae_seed0.json \
        --labels "paper reading" "new default" --out cmp.png

Precision comes in two kinds: as trained (``homo_prec_l{i}``, with the
source cues the model is given; solid lines) and from content alone
(``homo_prec_content_l{i}``, the same batch encoded without any cue; dashed
lines, dotted over foreground queries).

Reference lines: the precision of a random selection (chance, K / (N + 1)
own-source keys) and HomoCon's analytic floor (the loss of features
clustered by source as well as unit vectors can be,
``mixedae.models.losses.homocon_floor``). Both are computed from the
``config.py`` that mmengine saves next to ``scalars.json`` (for a study
run: from its method's config and overrides).
"""
import argparse
import json
import math
import os.path as osp
import re
from typing import Dict, List, Optional


ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _study_run(path: str) -> Optional[dict]:
    """A study run file (one JSON object with ``curves``), else None."""
    with open(path) as f:
        try:
            run = json.load(f)
        except json.JSONDecodeError:  # scalars.json: one record per line
            return None
    return run if isinstance(run, dict) and 'curves' in run else None


def read_scalars(path: str) -> List[dict]:
    """The training records (those with a loss) of a ``scalars.json`` or
    of a study run file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'No scalars.json at {path!r}.')
    run = _study_run(path)
    if run is not None:
        records = run['curves']
    else:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if 'loss' in r and 'step' in r]
    if not train:
        raise ValueError(f'{path!r} holds no training records (no "loss").')
    return train


def _config_of(path: str):
    """The config of a run: saved beside its ``scalars.json``, or a study
    run's method config with its overrides; None if unknown."""
    from mmengine.config import Config

    from mixedae.utils.config import merge_whole
    run = _study_run(path)
    if run is not None:
        cfg = Config.fromfile(osp.join(ROOT, run['key']['config']))
        merge_whole(cfg, run['key']['overrides'])
        cfg.train_dataloader.batch_size = run['key']['batch_size']
        return cfg
    cfg_path = osp.join(osp.dirname(path), 'config.py')
    return Config.fromfile(cfg_path) if osp.isfile(cfg_path) else None


def reference_values(scalars_path: str) -> Dict:
    """Chance precision and HomoCon floor of a run, from its config
    (``None`` where they cannot be known)."""
    out = dict(chance=None, floor=None)
    cfg = _config_of(scalars_path)
    if cfg is None:
        return out
    bb = cfg.model.get('backbone', {})
    if 'mix_ratio' not in bb or 'img_size' not in bb:
        return out  # not a MixedAE run (MAE): no references
    G = round(1 / bb['mix_ratio'])
    N = (bb['img_size'] // bb.get('patch_size', 16))**2
    out['chance'] = (N // G) / (N + 1)
    homocon = cfg.model.get('head', {}).get('homocon_loss')
    if homocon:
        from mmpretrain.registry import MODELS

        import mixedae  # noqa: F401  (registers the loss)
        loss = MODELS.build(homocon)
        images = cfg.train_dataloader.batch_size // G * bb.get('num_views', 1)
        out['floor'] = loss.floor(N, G, images)
    return out


def settled_at(records: List[dict], floor: float,
               tol: float = 0.05) -> Optional[int]:
    """The first logged step from which ``loss_homocon`` stays within
    ``tol`` (relative) of ``floor``; None if it never does."""
    steps, losses = series(records, 'loss_homocon')
    settled = None
    for step, loss in zip(steps, losses):
        if loss > (1 + tol) * floor:
            settled = None
        elif settled is None:
            settled = step
    return settled


def layer_keys(records: List[dict]) -> List[str]:
    keys = {k for r in records for k in r if re.fullmatch(r'homo_prec_l\d+',
                                                          k)}
    return sorted(keys, key=lambda k: int(k[len('homo_prec_l'):]))


def series(records: List[dict], key: str):
    pts = [(r['step'], r[key]) for r in records if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


# the precision kinds: (key prefix, line style, legend label)
KINDS = (('homo_prec', '-', 'as trained'),
         ('homo_prec_content', '--', 'content only'),
         ('homo_prec_content_fg', ':', 'content only, foreground'))


def _style_legend(ax, kinds) -> None:
    """Legend entries for the line styles of the precision kinds shown."""
    for _, style, label in kinds:
        ax.plot([], [], color='gray', linestyle=style, label=label)


def plot(runs: List[dict], out: str, title: Optional[str] = None) -> str:
    """``runs``: dicts with ``label``, ``records`` and ``ref`` (see
    :func:`reference_values`). One run: losses and every layer's precision
    in three panels; several: a panel per loss and per layer."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    layers = sorted({k for r in runs for k in layer_keys(r['records'])},
                    key=lambda k: int(k[len('homo_prec_l'):]))
    single = len(runs) == 1
    # a loss panel only for the terms some run logged
    losses = [k for k in ('loss_rec', 'loss_homocon', 'loss_recog')
              if any(k in r for run in runs for r in run['records'])]
    panels = losses + (
        (['precision', 'precision_content'] if layers else []) if single
        else layers)
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis('off')
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, panel in zip(axes.flat, panels):
        ax.set_xlabel('iteration')
        if panel.startswith('precision'):
            kinds = KINDS[:1] if panel == 'precision' else KINDS[1:]
            cmap = plt.get_cmap('viridis')
            for i, key in enumerate(layers):
                layer = key[len('homo_prec_l'):]
                for n, (prefix, style, _) in enumerate(kinds):
                    ax.plot(*series(runs[0]['records'],
                                    f'{prefix}_l{layer}'),
                            color=cmap(i / max(len(layers) - 1, 1)),
                            linestyle=style,
                            label=f'layer {layer}' if n == 0 else None)
            ref = runs[0]['ref']['chance']
            if ref is not None:
                ax.axhline(ref, color='red', linestyle='-.',
                           label=f'chance {ref:.3f}')
            if len(kinds) > 1:
                _style_legend(ax, kinds)
            ax.set_title('homologous precision per layer, ' + (
                'as trained' if panel == 'precision' else
                'from content alone (source cues removed)'), fontsize=9)
            ax.set_ylabel('own-source share of kept keys')
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, ncol=2)
            continue
        kinds = KINDS[:2] if panel.startswith('homo_prec_l') else \
            (('', '-', None), )
        for j, run in enumerate(runs):
            for n, (prefix, style, _) in enumerate(kinds):
                key = panel.replace('homo_prec', prefix) if prefix else panel
                xs, ys = series(run['records'], key)
                if xs:
                    ax.plot(xs, ys, color=colors[j % len(colors)],
                            linestyle=style,
                            label=run['label'] if n == 0 else None)
        if panel.startswith('homo_prec_l'):
            _style_legend(ax, KINDS[:2])
            ax.set_title(f'homologous precision, layer '
                         f'{panel[len("homo_prec_l"):]}')
            ax.set_ylabel('own-source share of kept keys')
            ax.set_ylim(0, 1)
            refs = {r['ref']['chance'] for r in runs} - {None}
            for ref in refs:
                ax.axhline(ref, color='red', linestyle='-.', linewidth=0.8,
                           label=f'chance {ref:.3f}')
        else:
            ax.set_title({'loss_rec': 'reconstruction loss',
                          'loss_homocon': 'HomoCon loss (weighted)',
                          'loss_recog': 'recognition loss (weighted)'
                          }[panel])
            ax.set_ylabel(panel)
            if panel == 'loss_homocon':
                refs = {r['ref']['floor'] for r in runs} - {None}
                for ref in refs:
                    ax.axhline(ref, color='red', linestyle='--',
                               linewidth=0.8, label=f'floor {ref:.4f}')
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('scalars', nargs='+',
                        help="runs' vis_data/scalars.json")
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument('--labels', nargs='+',
                        help='one per run (default: the run directories)')
    parser.add_argument('--title')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.scalars):
        parser.error(f'--labels has {len(args.labels)} names for '
                     f'{len(args.scalars)} runs.')
    return args


def main(argv=None) -> str:
    args = parse_args(argv)
    runs = []
    for i, path in enumerate(args.scalars):
        label = args.labels[i] if args.labels else osp.basename(
            osp.dirname(osp.dirname(osp.dirname(osp.abspath(path)))))
        runs.append(dict(
            label=label, records=read_scalars(path),
            ref=reference_values(path)))
    out = plot(runs, args.out, args.title)
    print(f'Wrote {out}')
    for run in runs:  # the numbers the HomoCon panel shows
        floor, steps = run['ref']['floor'], series(run['records'],
                                                   'loss_homocon')[1]
        if floor and steps:
            at = settled_at(run['records'], floor)
            print(f"{run['label']}: HomoCon ends at {steps[-1]:.4f}, "
                  f"{100 * (steps[-1] / floor - 1):+.1f}% of its floor "
                  f"{floor:.4f}; within 5% of it from iteration "
                  f"{at if at is not None else '- (never)'}")
    return out


if __name__ == '__main__':
    main()
