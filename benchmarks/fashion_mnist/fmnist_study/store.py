"""The per-run result files. The study's are kept in the repository, one
small JSON file per (budget, method, seed) under
``benchmarks/fashion_mnist/results/<epochs>ep/``: metrics, per-layer
precision (as trained and from content), the logged curves, timings and
settings; no checkpoint. The report is built from these files alone, so a
study of many hours finishes across sittings and survives a new machine."""
import json
import os
import os.path as osp
from typing import Optional

from .methods import METHODS, ROOT, slug

RESULTS = osp.join(ROOT, 'benchmarks', 'fashion_mnist', 'results')
# what a stored run must match to be reused
CACHE_KEYS = ('pretrain_images', 'epochs', 'batch_size', 'warmup_fraction',
              'finetune_images', 'eval_train_images', 'eval_test_images',
              'finetune_iters', 'finetune_batch_size', 'linear_epochs',
              'dense_train_canvases', 'dense_val_canvases')


def budget_name(budget: dict) -> str:
    """The results folder of a budget: ``3ep`` for the demo's."""
    name = f"{budget['epochs']}ep"
    if budget.get('pretrain_images'):
        name += f"-{budget['pretrain_images']}img"
    return name


def run_key(method: str, budget: dict) -> dict:
    """Everything a run's result depends on."""
    cfg, overrides = METHODS.get(method, (None, {}))
    return dict(method=method, config=cfg,
                overrides=json.loads(json.dumps(overrides)),
                **{k: budget.get(k) for k in CACHE_KEYS})


def run_path(results_dir: str, method: str, seed: int) -> str:
    return osp.join(results_dir, f'{slug(method)}_seed{seed}.json')


def load_run(path: str, key: dict) -> Optional[dict]:
    """The stored run at ``path`` if it was made with ``key``."""
    if not osp.exists(path):
        return None
    with open(path) as f:
        run = json.load(f)
    return run if run.get('key') == key else None


def save_run(path: str, run: dict) -> None:
    """Write one run, one logged record of its curves per line
    (atomically: an interrupted write leaves the old file)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    marker = '"@curves@"'
    text = json.dumps(dict(run, curves='@curves@'), indent=1)
    curves = ',\n  '.join(json.dumps(c) for c in run.get('curves', []))
    text = text.replace(marker, f'[\n  {curves}\n ]' if curves else '[]')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text + '\n')
    os.replace(tmp, path)
