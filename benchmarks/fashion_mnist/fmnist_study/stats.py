"""Means over seeds, and paired differences with Student-t intervals."""
import math
import statistics
from typing import Dict, List, Sequence

from .methods import COMPONENTS


def summarise(runs: List[dict], methods: Sequence[str],
              keys: Sequence[str]) -> Dict[str, dict]:
    """Per method: mean, sample std (None for one value) and n over seeds
    of each of ``keys`` that the runs hold."""
    out = {}
    for method in methods:
        rows = [r for r in runs if r['method'] == method]
        if not rows:
            continue
        out[method] = {}
        for key in keys:
            vals = [r[key] for r in rows if r.get(key) is not None]
            if not vals:
                continue
            out[method][key] = dict(
                mean=statistics.fmean(vals),
                std=statistics.stdev(vals) if len(vals) > 1 else None,
                n=len(vals))
    return out


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean and Student-t interval (None for one value) of ``values``."""
    from scipy import stats
    mean, n = statistics.fmean(values), len(values)
    half = None
    if n > 1:
        half = stats.t.ppf((1 + confidence) / 2, n - 1) * \
            statistics.stdev(values) / math.sqrt(n)
    return dict(mean=mean, ci=None if half is None else
                [mean - half, mean + half], n=n)


def paired_differences(runs: List[dict], methods: Sequence[str],
                       keys: Sequence[str], baseline: str = 'MAE',
                       confidence: float = 0.95) -> Dict[str, dict]:
    """Per method and key: the mean over seeds of ``method - baseline`` on
    the same seed, with a Student-t confidence interval (None for one
    seed), the seeds used and each seed's difference. Seeds where either
    run lacks the key are left out."""
    base = {r['seed']: r for r in runs if r['method'] == baseline}
    out = {}
    for method in methods:
        if method == baseline:
            continue
        for key in keys:
            pairs = [(r['seed'], r[key] - base[r['seed']][key])
                     for r in runs if r['method'] == method
                     and r.get(key) is not None and r['seed'] in base
                     and base[r['seed']].get(key) is not None]
            if not pairs:
                continue
            out.setdefault(method, {})[key] = dict(
                mean_ci([d for _, d in pairs], confidence),
                seeds=[seed for seed, _ in pairs],
                values=[d for _, d in pairs])
    return out


def component_differences(runs: List[dict], methods: Sequence[str],
                          keys: Sequence[str],
                          components=COMPONENTS) -> Dict[str, dict]:
    """Per part in ``components`` whose two methods are both in
    ``methods``: the paired differences (``paired_differences``) of the
    method against the one it builds on, with both names."""
    out = {}
    for method, base, part in components:
        if method in methods and base in methods:
            diff = paired_differences(runs, [method], keys, baseline=base)
            if diff:
                out[part] = dict(method=method, baseline=base,
                                 **diff[method])
    return out
