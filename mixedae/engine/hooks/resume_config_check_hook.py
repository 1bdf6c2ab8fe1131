"""Refuse to resume a run under a config that differs from the one it was
trained with."""
from typing import Dict, Iterable, List, Tuple

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import find_latest_checkpoint
from mmpretrain.registry import HOOKS

# what changes the training itself; ``data_preprocessor`` is the top-level
# one that the Runner merges into the model (mmpretrain's convention)
SECTIONS = ('model', 'data_preprocessor', 'train_dataloader',
            'optim_wrapper', 'param_scheduler', 'train_cfg')
# how the data are loaded, not which: free to change between machines
IGNORED = ('train_dataloader.num_workers',
           'train_dataloader.persistent_workers',
           'train_dataloader.pin_memory', 'train_dataloader.prefetch_factor')
OVERRIDE = 'resume_config_check'
_ABSENT = '<absent>'


def flatten(value, prefix: str = '') -> Dict[str, object]:
    """Nested dicts and lists -> ``{'a.b.0.c': leaf}``."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f'{prefix}.{key}' if prefix else str(key)))
    if not flat:  # keep empty containers visible
        flat[prefix] = value
    return flat


def config_differences(
        saved: Config,
        current: Config,
        sections: Iterable[str] = SECTIONS,
        ignored: Iterable[str] = IGNORED) -> List[Tuple[str, object, object]]:
    """``(key, saved value, current value)`` of every leaf key under
    ``sections`` that differs; absent keys read as ``'<absent>'``.

    Both configs are compared after the same ``pretty_text`` round trip
    (the form checkpoints store), so tuples against lists and other
    formatting do not count as changes.
    """
    def leaves(cfg):
        cfg = Config.fromstring(cfg.pretty_text, file_format='.py').to_dict()
        flat = {}
        for section in sections:
            if section in cfg:
                flat.update(flatten(cfg[section], section))
        return flat

    old, new = leaves(saved), leaves(current)
    skip = tuple(ignored)
    return [(k, old.get(k, _ABSENT), new.get(k, _ABSENT))
            for k in sorted(old.keys() | new.keys())
            if not k.startswith(skip) and old.get(k, _ABSENT) != new.get(
                k, _ABSENT)]


@HOOKS.register_module()
class ResumeConfigCheckHook(Hook):
    """Stop a resume whose config differs from the checkpoint's.

    With ``resume = True`` (or ``--resume``) the Runner continues the latest
    checkpoint of the work dir, whatever the current config says: rerunning
    a config with new ``--cfg-options`` in the same work dir would silently
    carry on the old run with the old weights, optimiser and epoch. Before
    the checkpoint is loaded, this hook compares the config saved in it
    (``meta.cfg``) with the current one under ``model``,
    ``data_preprocessor``, ``train_dataloader`` (not its worker settings),
    ``optim_wrapper``, ``param_scheduler`` and ``train_cfg``, and raises a
    ``RuntimeError`` listing every differing key. Set the top-level
    ``resume_config_check = False`` (``--cfg-options
    resume_config_check=False``) to resume anyway; the differences are then
    logged as a warning. It logs which checkpoint is resumed, and does
    nothing for ``load_from`` without resume (fine-tuning).
    """

    # before any other hook sees the checkpoint
    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine calls this hook for `load_from` too; only a resume
        # continues the old run. The Runner keeps the flags private.
        if not runner._resume:
            return
        path = runner._load_from or find_latest_checkpoint(runner.work_dir)
        meta = checkpoint.get('meta', {})
        runner.logger.info(
            f'Resuming {path} (epoch {meta.get("epoch")}, iter '
            f'{meta.get("iter")}, saved {meta.get("time", "?")}).')
        if 'cfg' not in meta or not runner.cfg:
            runner.logger.warning(
                f'{path} stores no config (meta.cfg) or the Runner has none: '
                'cannot check that the resumed run has the same config.')
            return
        try:
            saved = Config.fromstring(meta['cfg'], file_format='.py')
        except Exception as e:  # a best-effort check must not block resume
            runner.logger.warning(
                f'The config stored in {path} does not parse ({e!r}): '
                'cannot check that the resumed run has the same config.')
            return
        diffs = config_differences(saved, runner.cfg)
        if not diffs:
            return
        lines = '\n'.join(f'  {k}: {old!r} in the checkpoint, {new!r} now'
                          for k, old, new in diffs)
        if not runner.cfg.get(OVERRIDE, True):
            runner.logger.warning(
                f'Resuming {path} with a changed config ({OVERRIDE}=False):'
                f'\n{lines}')
            return
        raise RuntimeError(
            f'Refusing to resume {path}: the config differs from the one '
            f'that checkpoint was trained with:\n{lines}\n'
            'Resuming would continue the old run (its weights, optimiser '
            'state and epoch) under the new settings. Either train the new '
            'config in its own work dir (--work-dir DIR), or, to continue '
            'the old run with these changes on purpose, add '
            f'`--cfg-options {OVERRIDE}=False`.')
