"""Log training throughput in images per second."""
from typing import Optional, Sequence, Union

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Put ``train/img_per_sec`` (all ranks together) in the message hub, so
    the log line and ``scalars.json`` (and TensorBoard) carry it next to
    mmengine's ``eta`` and ``time``.

    ``img_per_sec = batch_size * world_size / mean(time)``, with ``time`` the
    :class:`IterTimerHook`'s iteration time (data loading included) averaged
    over the last ``window_size`` iterations, the same window the log
    processor smooths ``time`` with by default. Every rank is assumed to
    load batches of the same size (``drop_last=True``, as mixing needs).

    Args:
        window_size (int): iterations to average the time over. Defaults
            to 10.
    """

    # after IterTimerHook (NORMAL = 50) has stored this iteration's time,
    # before LoggerHook (BELOW_NORMAL = 60) formats the log line
    priority = 55

    def __init__(self, window_size: int = 10) -> None:
        if not (isinstance(window_size, int) and window_size >= 1):
            raise ValueError('`window_size` of ThroughputHook must be an '
                             f'int >= 1, got {window_size!r}.')
        self.window_size = window_size

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Union[dict, Sequence]] = None,
                         outputs: Optional[dict] = None) -> None:
        hub = runner.message_hub
        if data_batch is None or 'train/time' not in hub.log_scalars:
            return  # no IterTimerHook: nothing to divide by
        inputs = data_batch['inputs'] if isinstance(data_batch,
                                                    dict) else data_batch
        iter_time = hub.get_scalar('train/time').mean(self.window_size)
        if iter_time > 0:
            hub.update_scalar('train/img_per_sec',
                              len(inputs) * get_world_size() / iter_time)
