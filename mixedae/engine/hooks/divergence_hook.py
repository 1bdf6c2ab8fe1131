"""Stop a training run that diverges, before it writes a checkpoint with
non-finite weights."""
import math
import os.path as osp
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook, LoggerHook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS

KEY = 'default_hooks.divergence'


class TrainingDiverged(RuntimeError):
    """Raised by :class:`DivergenceHook`; the message is one line.
    ``tools/train.py`` prints it and exits with status 1."""


def non_finite(values: Dict[str, object]) -> Dict[str, object]:
    """The entries of ``{name: scalar}`` that are NaN or infinite, in
    order. Tensors (on one device) are tested together: one host copy."""
    tensors = {k: v.detach() for k, v in values.items() if torch.is_tensor(v)}
    ok = dict(zip(tensors, torch.stack(
        [torch.isfinite(v).all() for v in tensors.values()]).cpu().tolist()
                  )) if tensors else {}
    bad = {}
    for k, v in values.items():
        if k in tensors:
            if not ok[k]:
                bad[k] = v.item() if v.numel() == 1 else 'non-finite'
        elif not math.isfinite(float(v)):
            bad[k] = float(v)
    return bad


def non_finite_tensors(tensors: Iterable[Tuple[str, torch.Tensor]]
                       ) -> List[str]:
    """Names of the floating-point tensors holding a NaN or an infinity
    (one device-to-host copy for all of them)."""
    named = [(n, t) for n, t in tensors
             if torch.is_tensor(t) and t.is_floating_point() and t.numel()]
    if not named:
        return []
    flags = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()
    return [n for (n, _), ok in zip(named, flags.tolist()) if not ok]


def loss_scale_collapse(scale: float,
                        previous: Optional[float],
                        min_loss_scale: float,
                        since: Optional[int] = None) -> Optional[str]:
    """What to report when an AMP loss scale ``scale`` fell below
    ``min_loss_scale`` (None otherwise); ``previous`` is the scale read at
    iteration ``since``. A skipped step halves the dynamic scale and only
    ``growth_interval`` (2000) clean steps in a row double it, so a fall by
    2^n between two reads means at least n skipped steps."""
    if scale >= min_loss_scale:
        return None
    text = (f'the AMP loss scale fell to {scale:.3g}, below '
            f'min_loss_scale={min_loss_scale:g}')
    if previous is not None and 0 < scale < previous:
        text += (f' (from {previous:.3g}'
                 + (f' at iteration {since}' if since is not None else '')
                 + f': at least {round(math.log2(previous / scale))} '
                 'optimizer steps skipped for non-finite gradients)')
    return text


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint CheckpointHook wrote last (``work_dir/
    last_checkpoint``, written only after a checkpoint is saved)."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


@HOOKS.register_module()
class DivergenceHook(Hook):
    """Stop training with :class:`TrainingDiverged` when a loss term or the
    weights are no longer finite, or the AMP loss scale collapses; never
    let a checkpoint with non-finite weights be written.

    A guard of every MixedAE pre-training (``default_hooks.divergence``,
    see :class:`mixedae.engine.MixedAERunner`). It adds no host sync to
    the training step:

    * On the iterations the logger prints (LoggerHook's own test) it checks
      the loss terms in ``outputs``, the keys containing ``loss``. With
      :class:`MixedAEHook` these are the means since the previous log line
      (:meth:`MixedAE.parse_losses`), so a NaN or inf anywhere in the
      interval reaches them; the logger has already copied them to the host.
      On the same iterations it reads every AMP loss scale and stops when
      one is below ``min_loss_scale``: with a dynamic scaler every skipped
      step (non-finite gradients) halves the scale, so a scale that keeps
      falling means the steps keep being skipped while the loss may still
      look finite. A static ``loss_scale`` never moves and is not checked.
    * Right before each checkpoint of the :class:`CheckpointHook` schedule
      (on every rank, ahead of CheckpointHook, which deletes the oldest of
      ``max_keep_ckpts`` before writing) it checks the model's weights and,
      for a MixedAE, the loss sums pending since the last log line (summed
      over ranks: one collective per checkpoint); and in
      ``before_save_checkpoint`` (rank 0, inside
      :meth:`Runner.save_checkpoint`, before the file is written) the
      weights about to be saved, which also covers saves outside the
      schedule.

    The message is one line: the iteration, the non-finite terms (or
    weights, or the loss scale) and the last checkpoint written, whose
    weights were checked finite. It is logged and raised. Printing the log
    line with the NaN comes first: this hook runs after LoggerHook.

    Args:
        min_loss_scale (float): the AMP loss scale under which the run
            stops. The default 1 means the scaling no longer lifts any
            gradient: from the default initial scale 2^16 that is at least
            17 skipped steps more than the scale grew. Defaults to 1.0.
    """

    # after LoggerHook (BELOW_NORMAL = 60) printed the line, before the LOW
    # hooks (70: pictures), RNGStateHook (85) and CheckpointHook (90)
    priority = 65

    def __init__(self, min_loss_scale: float = 1.0) -> None:
        if isinstance(min_loss_scale, bool) or not isinstance(
                min_loss_scale, (int, float)) or not min_loss_scale > 0:
            raise ValueError(f'`{KEY}.min_loss_scale` must be a number > 0, '
                             f'got {min_loss_scale!r}.')
        self.min_loss_scale = float(min_loss_scale)
        self._logger_hook: Optional[LoggerHook] = None
        self._ckpt_hook: Optional[CheckpointHook] = None
        self._logged_iter = 0
        self._scales: Dict[str, Tuple[float, int]] = {}  # scale, iter
        self._means = False

    def before_train(self, runner) -> None:
        self._logger_hook = next(
            (h for h in runner.hooks if isinstance(h, LoggerHook)), None)
        self._ckpt_hook = next(
            (h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        self._logged_iter = runner.iter  # a resumed run starts past 0
        self._scales = {}
        # whether the logged losses are interval means (MixedAE's)
        self._means = any(
            type(h).__name__ == 'MixedAEHook' for h in runner.hooks)

    # ------------------------------------------------------------ schedule
    def _will_log(self, runner, batch_idx: int) -> bool:
        """LoggerHook.after_train_iter's test for printing."""
        h = self._logger_hook
        if h is None:
            return True
        return bool(
            self.every_n_inner_iters(batch_idx, h.interval)
            or (self.end_of_epoch(runner.train_dataloader, batch_idx) and
                (not h.ignore_last
                 or len(runner.train_dataloader) <= h.interval)))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        it = runner.iter + 1  # this iteration, counted from 1
        if self._will_log(runner, batch_idx):
            first, self._logged_iter = self._logged_iter + 1, it
            self._check_outputs(runner, outputs or {}, it, first)
            self._check_loss_scales(runner, it)
        h = self._ckpt_hook
        if h is not None and not h.by_epoch and (
                self.every_n_train_iters(runner, h.interval, h.save_begin)
                or (h.save_last and self.is_last_train_iter(runner))):
            self._check_before_checkpoint(runner, it)

    def after_train_epoch(self, runner) -> None:
        h = self._ckpt_hook
        if h is not None and h.by_epoch and (
                self.every_n_epochs(runner, h.interval, h.save_begin)
                or (h.save_last and self.is_last_train_epoch(runner))):
            self._check_before_checkpoint(runner, runner.iter)

    # -------------------------------------------------------------- checks
    def _check_outputs(self, runner, outputs: dict, it: int,
                       first: int) -> None:
        bad = non_finite({k: v for k, v in outputs.items() if 'loss' in k})
        if bad:
            where = f'the mean over iterations {first}-{it}' if (
                self._means and first < it) else f'logged at iteration {it}'
            self._stop(runner, it, f'{_terms(bad)} ({where})')

    def _check_loss_scales(self, runner, it: int) -> None:
        for name, wrapper in _optim_wrappers(runner):
            scaler = getattr(wrapper, 'loss_scaler', None)
            if scaler is None or not scaler.is_enabled():
                continue
            scale = float(scaler.get_scale())  # a host copy, logged only
            previous, since = self._scales.get(name, (None, None))
            self._scales[name] = (scale, it)
            text = loss_scale_collapse(scale, previous, self.min_loss_scale,
                                       since)
            if text:
                which = f' (optimizer {name!r})' if name else ''
                self._stop(runner, it, text + which)

    def _check_before_checkpoint(self, runner, it: int) -> None:
        model = _unwrap(runner.model)
        pending = _pending_losses(model)
        if pending and get_world_size() > 1:
            # the sums are this rank's: every rank must decide alike (the
            # weights are the same on all under DDP); once per checkpoint
            sums = torch.stack(list(pending.values()))
            all_reduce(sums, op='sum')
            pending = dict(zip(pending, sums))
        bad = non_finite(pending)
        if bad:
            self._stop(runner, it, f'{_terms(bad)} (summed since the last '
                       'log line), before the checkpoint')
        weights = non_finite_tensors(model.state_dict().items())
        if weights:
            self._stop(runner, it,
                       _weights(weights) + ', before the checkpoint')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # what is about to be written (CPU copies): raising here stops
        # Runner.save_checkpoint before the file exists
        weights = non_finite_tensors(
            checkpoint.get('state_dict', {}).items())
        if weights:
            it = checkpoint.get('meta', {}).get('iter', runner.iter)
            self._stop(runner, it, _weights(weights) +
                       ' in the checkpoint about to be saved')

    def _stop(self, runner, it: int, what: str) -> None:
        ckpt = last_checkpoint(runner.work_dir)
        epoch = f' (epoch {runner.epoch + 1})' if isinstance(
            runner.train_loop, EpochBasedTrainLoop) else ''
        message = (f'Training diverged at iteration {it}{epoch}: {what}; '
                   'last checkpoint with finite weights: '
                   f'{ckpt or "none (none written yet)"}. `{KEY}=None` '
                   'trains on regardless.')
        runner.logger.error(message)
        raise TrainingDiverged(message)


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _optim_wrappers(runner):
    wrapper = runner.optim_wrapper
    if isinstance(wrapper, OptimWrapperDict):
        return list(wrapper.items())
    return [('', wrapper)]


def _pending_losses(model) -> Dict[str, torch.Tensor]:
    """The loss sums :class:`MixedAE` keeps on the device between log lines
    (``_pending_log = (names, sums, count)``); {} for any other model or
    layout. Non-finite sums mean non-finite means."""
    pending = getattr(model, '_pending_log', None)
    try:
        names, sums, _ = pending
        return {n: s for n, s in zip(names, sums) if 'loss' in n}
    except (TypeError, ValueError):
        return {}


def _terms(bad: Dict[str, object]) -> str:
    if len(bad) > 1:
        bad = {k: v for k, v in bad.items() if k != 'loss'}  # their total
    return 'non-finite ' + ', '.join(f'{k} = {v}' for k, v in bad.items())


def _weights(names: List[str]) -> str:
    more = f' and {len(names) - 3} more' if len(names) > 3 else ''
    return f'non-finite weights in {", ".join(names[:3])}{more}'
