"""Store the random number generators' states in checkpoints, so that a
resumed run draws the same mixing masks and augmentations as an
uninterrupted one."""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


def get_rng_states() -> dict:
    """This process's python / numpy / torch (CPU and current CUDA device)
    generator states, as tensors and plain Python values (no numpy objects,
    so checkpoints stay loadable by restricted unpicklers)."""
    np_state = np.random.get_state()
    states = dict(
        python=random.getstate(),
        numpy=(np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
               int(np_state[2]), int(np_state[3]), float(np_state[4])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    """Inverse of :func:`get_rng_states`."""
    random.setstate(states['python'])
    name, keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state(
        (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every rank's RNG states with each checkpoint and restore them on
    resume.

    mmengine restores weights, optimiser, schedulers and counters, but not
    the global generators, and MixedAE draws its mixing masks from torch's
    global generator and the transforms draw from numpy's / python's, so a
    resumed run would otherwise see different masks and crops than an
    uninterrupted one. With this hook, a run resumed from a checkpoint
    continues bit for bit (same device, same world size) as if never
    stopped.

    Choices and limits:

    * The states are snapshotted right before :class:`CheckpointHook`
      writes (this hook's priority sits just above its ``VERY_LOW``), i.e.
      after every other hook has drawn its numbers for that iteration or
      epoch. Only rank 0 writes checkpoints, so every rank's states are
      gathered then (one ``all_gather_object`` per checkpoint) and stored as
      a list indexed by rank in ``checkpoint['rng_states']``.
    * Resume with :class:`EpochBasedTrainLoop` is exact at epoch
      checkpoints (the demo saves every epoch): mmengine's epoch loop
      restarts an interrupted epoch from its first batch, so mid-epoch
      (``by_epoch=False``) checkpoints cannot be continued exactly anyway.
      With :class:`IterBasedTrainLoop` iteration checkpoints are exact.
    * The states of dataloader worker processes are not saved: the
      augmentations match exactly with ``num_workers=0`` or with
      ``persistent_workers=False`` (workers are then re-seeded identically
      every epoch); with persistent workers the resumed run's crops differ
      (statistically equivalent) from the uninterrupted run's.
    * States are restored in ``before_train``, after mmengine's own resume
      (which may re-seed), and only when resuming, not for ``load_from``;
      a checkpoint saved with another world size is ignored with a warning.
    """

    # just before CheckpointHook (VERY_LOW = 90) and after the LOW hooks
    # (e.g. MixingVisualizationHook), which may draw random numbers
    priority = 85

    def __init__(self) -> None:
        self._snapshot: Optional[List[dict]] = None
        self._loaded: Optional[List[dict]] = None
        self._ckpt_hook = None

    def before_train(self, runner) -> None:
        from mmengine.hooks import CheckpointHook
        self._ckpt_hook = next(
            (h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if self._loaded is not None and getattr(runner, '_resume', False):
            if len(self._loaded) != get_world_size():
                runner.logger.warning(
                    f'RNGStateHook: the checkpoint holds RNG states of '
                    f'{len(self._loaded)} ranks but this run has '
                    f'{get_world_size()}; keeping the fresh seeds.')
            else:
                set_rng_states(self._loaded[get_rank()])
                runner.logger.info('RNGStateHook: RNG states restored.')
        self._loaded = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        h = self._ckpt_hook
        if h is not None and not h.by_epoch and (
                self.every_n_train_iters(runner, h.interval, h.save_begin)
                or (h.save_last and self.is_last_train_iter(runner))):
            self._take_snapshot()

    def after_train_epoch(self, runner) -> None:
        h = self._ckpt_hook
        if h is not None and h.by_epoch and (
                self.every_n_epochs(runner, h.interval, h.save_begin)
                or (h.save_last and self.is_last_train_epoch(runner))):
            self._take_snapshot()

    def _take_snapshot(self) -> None:
        # collective: runs on every rank at the same points
        states = get_rng_states()
        self._snapshot = all_gather_object(states) \
            if get_world_size() > 1 else [states]

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # rank 0 only; a checkpoint saved outside the schedule (e.g. by a
        # user call) gets rank 0's current state
        checkpoint['rng_states'] = self._snapshot or [get_rng_states()]
        self._snapshot = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('rng_states')
