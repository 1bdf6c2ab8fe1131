"""The study's figures: paired differences against MAE with their
intervals."""
from typing import Dict, Sequence

LABELS = dict(knn_top1='k-NN', linear_top1='linear probe',
              finetune_top1='fine-tune')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


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
