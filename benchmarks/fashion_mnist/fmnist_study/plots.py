"""The study's figures: paired differences against MAE with their
intervals, and each method's metrics against the pre-training budget."""
from typing import Dict, Sequence

LABELS = dict(knn_top1='k-NN', linear_top1='linear probe',
              finetune_top1='fine-tune')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def ScalarFormatter():
    from matplotlib.ticker import ScalarFormatter as Formatter
    return Formatter()


def plot_differences(diffs: Dict[str, dict], metrics: Sequence[str],
                     path: str, title: str) -> None:
    """Bar chart of the paired differences against MAE with their CIs."""
    plt = _pyplot()
    methods = list(diffs)
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(methods), 3.6))
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        xs, means, errs = [], [], [[], []]
        for i, method in enumerate(methods):
            d = diffs[method].get(metric)
            if d is None:
                continue
            xs.append(i + (j - (len(metrics) - 1) / 2) * width)
            means.append(d['mean'])
            lo, hi = d['ci'] or (d['mean'], d['mean'])
            errs[0].append(d['mean'] - lo)
            errs[1].append(hi - d['mean'])
        ax.bar(xs, means, width, yerr=errs, capsize=3,
               label=LABELS[metric])
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks(range(len(methods)))
    seeds = [' '.join(map(str, next(iter(diffs[m].values()))['seeds']))
             for m in methods]
    ax.set_xticklabels([m.replace(', ', ',\n').replace(' (', '\n(') +
                        f'\nseeds {s}' for m, s in zip(methods, seeds)],
                       fontsize=8)
    ax.set_ylabel('top-1 minus MAE (points)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_budgets(points: Dict[str, Dict[int, dict]], metrics: Sequence[str],
                 names: Dict[str, str], path: str, title: str) -> None:
    """Each method's metric against the pre-training budget: ``points``
    maps method -> epochs -> metric -> ``mean_ci`` dict; error bars are
    the 95% intervals over seeds."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics),
                             figsize=(3.4 * len(metrics), 3.4),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for method, by_budget in points.items():
            xs = sorted(e for e in by_budget if metric in by_budget[e])
            if not xs:
                continue
            stats = [by_budget[e][metric] for e in xs]
            means = [s['mean'] for s in stats]
            errs = [0 if s['ci'] is None else s['mean'] - s['ci'][0]
                    for s in stats]
            ax.errorbar(xs, means, yerr=errs, marker='o', capsize=3,
                        label=method)
        ax.set_xscale('log', base=2)
        ax.set_xticks(sorted({e for b in points.values() for e in b}))
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.set_xlabel('pre-training epochs')
        ax.set_title(names[metric], fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
