"""The study's markdown tables: the metrics per method, the paired
differences with their intervals, and the homologous precision per layer,
as trained and from content alone."""
import statistics
from typing import Dict, List, Optional, Sequence

from .methods import NUM_PATCHES, GROUP_SIZE, homocon_floor_of

NAMES = dict(knn_top1='k-NN top-1 (%)', linear_top1='linear top-1 (%)',
             finetune_top1='fine-tune top-1 (%)',
             seg_miou='seg. mIoU, 11 classes (%)',
             seg_miou_items='seg. mIoU, 10 items (%)',
             discovery_fg_ari='discovery FG-ARI (%)',
             discovery_best_iou='discovery best-match IoU (%)')
CLASSIFICATION = ('knn_top1', 'linear_top1', 'finetune_top1')
DENSE = ('seg_miou', 'seg_miou_items', 'discovery_fg_ari',
         'discovery_best_iou')
CHANCE = (NUM_PATCHES // GROUP_SIZE) / (NUM_PATCHES + 1)
# rows of the precision table: (the run's recognition entry, label);
# 'log' is the last logged training batch's content-only precision
PRECISIONS = (('as_trained', 'as trained'),
              ('content', 'content only'),
              ('content_fg', 'content only, foreground queries'),
              ('log', 'content only, last logged training batch'))


def format_stat(stat: Optional[dict], fmt: str = '{:.1f}') -> str:
    """A table cell: 'mean ± std', 'mean' for one seed, '–' for none."""
    if stat is None:
        return '–'
    text = fmt.format(stat['mean'])
    if stat['std'] is not None:
        text += ' ± ' + fmt.format(stat['std'])
    return text


def format_diff(diff: Optional[dict]) -> str:
    """A table cell: '+1.2 [+0.3, +2.1]' (mean and CI), '–' for none."""
    if diff is None:
        return '–'
    text = f"{diff['mean']:+.1f}"
    if diff['ci'] is not None:
        text += ' [{:+.1f}, {:+.1f}]'.format(*diff['ci'])
    return text


def format_per_seed(diff: Optional[dict]) -> str:
    """A table cell: each seed's difference, '+1.0 / +2.0 / +3.0'."""
    if diff is None:
        return '–'
    return ' / '.join(f'{v:+.1f}' for v in diff['values'])


def diff_cells(diff: Dict[str, dict], metrics: Sequence[str],
               per_seed: bool = False) -> str:
    """'seeds | cell | cell ...' of one row of paired differences: mean
    [CI], or each seed's difference with ``per_seed``."""
    seeds = next(diff[m]['seeds'] for m in metrics if m in diff)
    cell = format_per_seed if per_seed else format_diff
    return ' | '.join([' '.join(map(str, seeds))] +
                      [cell(diff.get(m)) for m in metrics])


def _precision(run: dict, kind: str, layer: int) -> Optional[float]:
    """One layer's end-of-training precision of one kind (a
    :data:`PRECISIONS` key), None if the run has none."""
    if kind == 'log':
        return run.get('final_scalars', {}).get(
            f'homo_prec_content_l{layer}')
    rec = run.get('recognition')
    if not rec or layer not in rec['layers']:
        return None
    return rec[kind][rec['layers'].index(layer)]


def precision_cells(runs: Sequence[dict], method: str, kind: str,
                    num_layers: int) -> List[str]:
    """Each layer's end-of-training precision of one kind (a
    :data:`PRECISIONS` key): the mean over seeds, and the lowest seed's in
    brackets when there are several."""
    cells = []
    for i in range(num_layers):
        vals = [v for r in runs if r['method'] == method
                for v in [_precision(r, kind, i)] if v is not None]
        cell = f'{statistics.fmean(vals):.2f}' if vals else '–'
        if len(vals) > 1:
            cell += f' ({min(vals):.2f})'
        cells.append(cell)
    return cells


def precision_table(runs: Sequence[dict], methods: Sequence[str],
                    batch_size: int, num_layers: int = 6) -> List[str]:
    """The precision rows of every method with homologous attention, and
    its final HomoCon loss next to the loss's floor."""
    with_prec = [m for m in methods if any(
        r.get('recognition') for r in runs if r['method'] == m)]
    if not with_prec:
        return []
    rec = next(r['recognition'] for r in runs if r.get('recognition'))
    lines = [
        '', 'Homologous precision per layer at the end of pre-training, '
        f"on {rec['images']} test images mixed by the same masks for every "
        'method (mean over seeds, the lowest seed in brackets; chance '
        f'{NUM_PATCHES // GROUP_SIZE}/{NUM_PATCHES + 1} = {CHANCE:.2f}). '
        '*As trained*: with the source cues the model was trained with '
        '(homologous bias, segment embedding); *content only*: the same '
        'images encoded again with every cue removed, i.e. what the '
        'encoder recognises from what the patches look like; '
        '*foreground*: queries whose brightest pixel is not black '
        f"({100 * rec['fg_share']:.0f}% of the patches; a blank patch "
        "cannot tell its source); *last logged training batch*: the "
        'content-only precision the training log printed last (128 '
        'cropped training images, which hold fewer blank patches). The '
        'final HomoCon loss is next to its floor (features clustered by '
        'source as well as unit vectors can be).', '',
        '| method | precision | ' + ' | '.join(
            f'l{i}' for i in range(num_layers)) +
        ' | loss_homocon | its floor |', '|---|---|' + '---:|' *
        (num_layers + 2)]
    for method in with_prec:
        vals = [r['final_scalars']['loss_homocon'] for r in runs
                if r['method'] == method
                and 'loss_homocon' in r.get('final_scalars', {})]
        floor = homocon_floor_of(method, batch_size)
        for j, (kind, label) in enumerate(PRECISIONS):
            tail = ['', '']
            if j == 0:
                tail = [f'{statistics.fmean(vals):.4f}' if vals else '–',
                        '–' if floor is None else f'{floor:.4f}']
            lines.append('| {} | {} | {} |'.format(
                method if j == 0 else '', label, ' | '.join(
                    precision_cells(runs, method, kind, num_layers) + tail)))
    return lines


def metric_table(summary: Dict[str, dict], runs: Sequence[dict],
                 metrics: Sequence[str], time: bool = True) -> List[str]:
    """Mean ± std over seeds of ``metrics`` per method."""
    lines = ['| method | seeds | ' + ('pre-train time / run (s) | '
                                     if time else '') +
             ' | '.join(NAMES[m] for m in metrics) + ' |',
             '|---|---|' + ('---:|' if time else '') + '---:|' * len(metrics)]
    for method, stats in summary.items():
        if not any(k in stats for k in metrics):
            continue
        cells = [method, ' '.join(str(r['seed']) for r in runs
                                  if r['method'] == method)]
        if time:
            cells.append(format_stat(stats.get('pretrain_seconds'), '{:.0f}'))
        cells += [format_stat(stats.get(k)) for k in metrics]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def diff_table(diffs: Dict[str, dict], metrics: Sequence[str],
               parts: bool = False, per_seed: bool = False) -> List[str]:
    """One row of paired differences (mean [CI], or each seed's with
    ``per_seed``) per method, or per part of the recipe
    (``component_differences``)."""
    metrics = [m for m in metrics if any(m in d for d in diffs.values())]
    if not metrics:
        return []
    head = '| part | method − baseline |' if parts else '| method |'
    lines = [head + ' seeds | ' + ' | '.join(
        'Δ ' + NAMES[m].replace(' (%)', '') for m in metrics) + ' |',
        '|---' * (2 + parts) + '|' + '---:|' * len(metrics)]
    for name, d in diffs.items():
        first = f"{name} | {d['method']} − {d['baseline']}" if parts \
            else name
        lines.append(f'| {first} | {diff_cells(d, metrics, per_seed)} |')
    return lines


def diff_block(diffs: Dict[str, dict], metrics: Sequence[str],
               intro: str, parts: bool = False) -> List[str]:
    """The paired differences (mean [CI]) under ``intro`` and, where a row
    has two seeds or more, each seed's difference; [] for no rows."""
    table = diff_table(diffs, metrics, parts)
    if not table:
        return []
    lines = ['', intro, ''] + table
    if any(len(d[m]['seeds']) > 1 for d in diffs.values()
           for m in metrics if m in d):
        lines += ['', "Each seed's difference, in the order of the seeds "
                  'column:', ''] + diff_table(diffs, metrics, parts, True)
    return lines


def markdown(summary: Dict[str, dict], settings: dict,
             diffs: Optional[Dict[str, dict]] = None,
             runs: Sequence[dict] = (),
             parts: Optional[Dict[str, dict]] = None) -> str:
    """The results tables: mean ± std over seeds; the paired differences
    against MAE, and those of each part of the recipe, with their
    confidence intervals; the frozen dense probes; the homologous
    precision per layer."""
    seeds = settings['seeds']
    asked = settings.get('metrics', list(NAMES))
    metrics = [m for m in CLASSIFICATION if m in asked]
    lines = metric_table(summary, runs, metrics)
    pre = settings['pretrain_images'] or 60000
    conf = round(100 * settings.get('confidence', 0.95))
    lines += [
        '',
        f"Fashion-MNIST, seeds {seeds} (mean ± sample std over the seeds "
        'run so far). '
        f"Pre-training: {settings['epochs']} epoch(s) of {pre} train images "
        f"(no labels), batch {settings['batch_size']}. k-NN (k = 20, cosine, "
        'T = 0.07) and linear probe on frozen average-pooled features, '
        f"{settings['eval_train_images']} train / "
        f"{settings['eval_test_images']} test images. Fine-tune: "
        f"{settings['finetune_iters']} iterations of "
        f"{settings['finetune_batch_size']}, tested on "
        f"{settings['eval_test_images']} test images. Pre-train time: the "
        'training loop of one run (wall clock, this machine, often shared '
        'with a second run).']
    if diffs:
        lines += diff_block(diffs, metrics, 'Paired differences against MAE '
                            f'(same seed), mean [{conf}% CI, Student t]:')
    if parts:
        lines += diff_block(parts, metrics, 'What each part adds: paired '
                            'differences between a method and the one it '
                            f'builds on (same seed), mean [{conf}% CI]:',
                            parts=True)
    dense = [m for m in DENSE if any(m in s for s in summary.values())]
    if dense:
        lines += ['', 'Frozen dense probes on multi-object canvases (1-3 '
                  'Fashion-MNIST items on a black 64-px canvas; '
                  f"{settings.get('dense_train_canvases')} train / "
                  f"{settings.get('dense_val_canvases')} val canvases): a "
                  'linear classifier on every frozen patch feature, '
                  'upsampled (mIoU over the 11 classes and over the 10 '
                  'items), and zero-shot object discovery (k-means with '
                  'k = 4 on each canvas\'s patch features, no labels; FG-ARI '
                  'over canvases with two or more items, best-match IoU per '
                  'item):', '']
        lines += metric_table(summary, runs, dense, time=False)
        if diffs:
            lines += diff_block(diffs, dense, 'Paired differences against '
                                f'MAE, mean [{conf}% CI]:')
        if parts:
            lines += diff_block(parts, dense, 'What each part adds, mean '
                                f'[{conf}% CI]:', parts=True)
    lines += precision_table(runs, list(summary), settings['batch_size'])
    return '\n'.join(lines) + '\n'


def budget_table(by_budget: Dict[int, List[dict]], methods: Sequence[str],
                 metrics: Sequence[str], confidence: float = 0.95
                 ) -> List[str]:
    """The methods at every budget side by side: per metric, the mean ±
    std over seeds and the paired difference against MAE [CI] at each
    budget (``by_budget``: epochs -> runs)."""
    from .stats import paired_differences, summarise
    budgets = sorted(by_budget)
    head = ' | '.join(f'{e} ep' for e in budgets) + ' | ' + ' | '.join(
        f'Δ MAE, {e} ep' for e in budgets)
    lines = [f'| method | metric | {head} |',
             '|---|---|' + '---:|' * (2 * len(budgets))]
    summaries = {e: summarise(r, methods, metrics)
                 for e, r in by_budget.items()}
    diffs = {e: paired_differences(r, methods, metrics,
                                   confidence=confidence)
             for e, r in by_budget.items()}
    for method in methods:
        for metric in metrics:
            stats = [summaries[e].get(method, {}).get(metric)
                     for e in budgets]
            if not any(stats):
                continue
            cells = [format_stat(s) for s in stats] + [
                format_diff(diffs[e].get(method, {}).get(metric))
                for e in budgets]
            lines.append(f'| {method} | {NAMES[metric]} | ' +
                         ' | '.join(cells) + ' |')
    return lines


def budget_seeds(by_budget: Dict[int, List[dict]],
                 methods: Sequence[str]) -> str:
    """The seeds behind each budget's points, e.g. ``3 ep: 0 1 2``; where
    the methods at a budget hold different seeds, each method's own
    (``12 ep: MAE 0 1 2, naive mixing 0 1``), so a plot never claims
    seeds a method lacks."""
    parts = []
    for epochs, runs in sorted(by_budget.items()):
        held = {m: sorted({r['seed'] for r in runs if r['method'] == m})
                for m in methods}
        held = {m: s for m, s in held.items() if s}
        if len({tuple(s) for s in held.values()}) <= 1:
            seeds = next(iter(held.values()), [])
            parts.append(f'{epochs} ep: ' + ' '.join(map(str, seeds)))
        else:
            parts.append(f'{epochs} ep: ' + ', '.join(
                f'{m} ' + ' '.join(map(str, s)) for m, s in held.items()))
    return '; '.join(parts)
