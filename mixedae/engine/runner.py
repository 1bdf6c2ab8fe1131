"""mmengine's Runner, making sure a MixedAE pre-training runs with its guard
hooks."""
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import RUNNERS

# The guards: `default_hooks` key -> hook type. Documented in
# configs/_base_/mixedae_runtime.py (which sets them) and docs/launching.md.
GUARDS = OrderedDict(
    mixedae='MixedAEHook',  # sync-free logging, batch checks, warnings
    rng_state='RNGStateHook',  # RNG states in checkpoints: exact resume
    resume_check='ResumeConfigCheckHook',  # no resume under a new config
    divergence='DivergenceHook',  # stop on NaN / inf, no NaN checkpoints
)

HookCfg = Union[Hook, dict]


def hook_type(hook) -> Optional[str]:
    """The registry name of a hook or hook config (scope prefix dropped)."""
    if isinstance(hook, Hook):
        return type(hook).__name__
    if isinstance(hook, dict):
        t = hook.get('type')
        if isinstance(t, str):
            return t.split('.')[-1]
        if isinstance(t, type):
            return t.__name__
    return None


def _same(a: HookCfg, b: HookCfg) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return ({**a, 'type': hook_type(a)} == {**b, 'type': hook_type(b)})
    return a is b


def place_guards(default_hooks: Optional[Dict[str, Optional[HookCfg]]],
                 custom_hooks: Optional[List[HookCfg]],
                 required: bool = True,
                 logger=None) -> Tuple[Dict[str, HookCfg], List[HookCfg]]:
    """``default_hooks`` and ``custom_hooks`` with every guard of
    :data:`GUARDS` exactly once.

    * ``default_hooks.<key> = None`` turns guard ``<key>`` off: it is
      dropped (mmengine only accepts None for its own default hooks).
    * A guard listed more than once (say in ``default_hooks`` and, as
      before the guards moved there, in ``custom_hooks``) is registered
      once, from its first place (``default_hooks`` first), with a log
      line; listed with different arguments, or listed although its key is
      None, it is a ``ValueError`` naming the places.
    * With ``required`` (a MixedAE model), a guard found nowhere and not
      turned off (e.g. ``default_hooks`` replaced with ``_delete_=True``)
      is added under its key, with a warning saying so.

    Returns new containers; the inputs are not modified.
    """
    default_hooks = OrderedDict(default_hooks or {})
    custom_hooks = list(custom_hooks or [])
    drop_custom = set()
    for key, name in GUARDS.items():
        off = key in default_hooks and default_hooks[key] is None
        if off:
            del default_hooks[key]
        places = [(f'default_hooks.{k}', k, h)
                  for k, h in default_hooks.items() if hook_type(h) == name]
        places += [(f'custom_hooks[{i}]', i, h)
                   for i, h in enumerate(custom_hooks)
                   if hook_type(h) == name]
        where = ', '.join(f'`{p[0]}`' for p in places)
        if off and places:
            raise ValueError(
                f'`default_hooks.{key}` is None, which turns {name} off, '
                f'but {where} lists it: remove one of the two.')
        if len(places) > 1:
            first = places[0]
            for place in places[1:]:
                if not _same(first[2], place[2]):
                    raise ValueError(
                        f'{name} is a guard that runs once, but it is '
                        f'configured differently as `{first[0]}` '
                        f'({first[2]!r}) and `{place[0]}` ({place[2]!r}): '
                        f'configure it as `default_hooks.{key}` only.')
            for label, ref, _ in places[1:]:
                if label.startswith('custom_hooks'):
                    drop_custom.add(ref)
                else:
                    del default_hooks[ref]
            _log(logger, 'info', f'{name} is listed as {where}: registered '
                 f'once, as `{first[0]}`.')
        if required and off:
            _log(logger, 'warning', f'Training without the guard {name}: '
                 f'`default_hooks.{key}` is None.')
        elif required and not places:
            default_hooks[key] = dict(type=name)
            _log(logger, 'warning', f'The config lacks the guard {name} '
                 f'(`default_hooks.{key}`; was `default_hooks` replaced with '
                 '`_delete_=True`?): added it. `default_hooks.'
                 f'{key}=None` turns it off.')
    custom_hooks = [h for i, h in enumerate(custom_hooks)
                    if i not in drop_custom]
    return dict(default_hooks), custom_hooks


def _log(logger, level: str, message: str) -> None:
    if logger is not None:
        getattr(logger, level)(f'MixedAERunner: {message}')


def is_mixedae(model) -> bool:
    from ..models import MixedAE
    return isinstance(model.module if is_model_wrapper(model) else model,
                      MixedAE)


@RUNNERS.register_module()
class MixedAERunner(Runner):
    """mmengine's :class:`Runner` with the guard hooks of :data:`GUARDS`
    always registered, once, for a MixedAE model (:func:`place_guards`).

    Why: mmengine merges dicts but replaces lists. The guards used to sit
    in ``custom_hooks``, so a derived config setting ``custom_hooks =
    [dict(type='ThroughputHook')]`` silently ran without them (and resumed
    under a changed config without a word). They now live in
    ``default_hooks`` under named keys (configs/_base_/mixedae_runtime.py),
    which a derived config merges into instead of replacing, and
    ``default_hooks.<key> = None`` is the one way to turn one off. This
    runner is the safety net for what merging cannot catch (a
    ``default_hooks`` with ``_delete_=True``), it accepts None for the
    guard keys (mmengine's Runner asserts on None for names it does not
    know), and it keeps a guard still listed in ``custom_hooks`` from
    running twice.

    Configs select it with ``runner_type = 'MixedAERunner'`` (the MixedAE
    runtime does); ``tools/train.py`` then builds it through ``RUNNERS``,
    like mmpretrain's. In Python: ``RUNNERS.build(cfg)`` or
    ``MixedAERunner.from_cfg(cfg)``. ``Runner.from_cfg(cfg)`` still gets the
    guards from ``default_hooks``, without this net. Other models (e.g.
    MAE configs derived from the MixedAE demo) get no guard added.
    """

    def register_hooks(self,
                       default_hooks: Optional[Dict[str, HookCfg]] = None,
                       custom_hooks: Optional[List[HookCfg]] = None) -> None:
        default_hooks, custom_hooks = place_guards(
            default_hooks, custom_hooks, required=is_mixedae(self.model),
            logger=self.logger)
        super().register_hooks(default_hooks, custom_hooks)
