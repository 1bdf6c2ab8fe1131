"""MixedAE's training hook: checks before training, logging without host
syncs, and warnings when homologous recognition fails."""
from typing import Optional, Union

from mmengine.hooks import Hook, LoggerHook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class MixedAEHook(Hook):
    """Check the batches before training, tell :class:`MixedAE` which
    iterations the logger prints, and check what it logs.

    * Before training it checks that every batch can be split into groups
      of G = 1 / ``mix_ratio`` images: ``train_dataloader.batch_size`` (per
      GPU) must be a multiple of G and, unless ``drop_last`` is set, so
      must the last, smaller batch of every rank; likewise
      ``MixingVisualizationHook.num_images``. A mistake then stops the run
      before its first iteration, not hours into an epoch.
    * Before every training iteration it sets ``model.log_step`` to whether
      :class:`LoggerHook` will print after it (the same test LoggerHook
      uses). On the other iterations the model keeps its loss terms on the
      device and computes no precision, so the training step never waits
      for the device; the logged losses are the means since the previous
      log line (see :meth:`MixedAE.parse_losses`). The configs pair this
      hook with ``log_processor = dict(mean_pattern=...)`` without
      ``loss``, so that the logger prints those means as they are instead
      of averaging them again over its window.
    * After a printed iteration it warns (once per epoch and condition)
      when a homologous-attention layer's precision is below chance, the
      share ``K / (N + 1)`` of own-source keys in a random selection, by
      more than ``prec_margin``; or when ``loss_homocon`` is within
      ``floor_margin`` (relative) of its analytic floor
      (:func:`homocon_floor`), i.e. HomoCon is solved and gives no more
      signal; or when the precision as trained (``homo_prec``) is at least
      ``prior_margin`` above chance while the precision from content alone
      (``homo_prec_content``) is within ``prec_margin`` of chance: the
      recognition then comes from the source prior (the homologous bias or
      the segment embedding), not from what the patches look like.

    Args:
        prec_margin (float): how far below chance a layer may fall before
            the warning (precision is noisy around chance early on).
            Defaults to 0.02.
        floor_margin (float): relative distance to the HomoCon floor that
            counts as "at the floor". Defaults to 0.02.
        prior_margin (float): how far above chance the precision as
            trained must be for the source-prior warning. Defaults to 0.2.
    """

    priority = 'NORMAL'

    def __init__(self, prec_margin: float = 0.02,
                 floor_margin: float = 0.02,
                 prior_margin: float = 0.2) -> None:
        self.prec_margin = prec_margin
        self.floor_margin = floor_margin
        self.prior_margin = prior_margin
        self._logger_hook: Optional[LoggerHook] = None
        self._warned = set()

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def before_train(self, runner) -> None:
        self._logger_hook = next(
            (h for h in runner.hooks if isinstance(h, LoggerHook)), None)
        model = self._model(runner)
        if not hasattr(model, 'log_step'):
            raise TypeError(
                f'MixedAEHook needs a MixedAE model, got '
                f'{type(model).__name__}: set `default_hooks.mixedae=None` '
                '(or remove it from `custom_hooks`).')
        self.check_batches(runner, model.backbone.group_size)

    @staticmethod
    def check_batches(runner, group_size: int) -> None:
        """Raise a ValueError naming the config key when some training
        batch (or the visualisation batch) is not a multiple of G."""
        G = group_size
        loader = runner.train_dataloader
        bs = loader.batch_size
        if bs % G:
            raise ValueError(
                f'`train_dataloader.batch_size`={bs} (per GPU) is not a '
                f'multiple of the group size G={G} (1 / mix_ratio): every '
                'batch is mixed in groups of G images.')
        if not loader.drop_last:
            per_rank = len(loader.sampler)  # this rank's samples per epoch
            last = per_rank % bs
            if last % G:
                raise ValueError(
                    f'With `train_dataloader.drop_last`=False the last '
                    f'batch of every epoch holds {last} images ({per_rank} '
                    f'per GPU, batches of {bs}), not a multiple of the '
                    f'group size G={G}: set `drop_last=True`.')
        for hook in runner.hooks:
            n = getattr(hook, 'num_images', None)
            if type(hook).__name__ == 'MixingVisualizationHook' and n % G:
                raise ValueError(
                    f'`num_images`={n} of MixingVisualizationHook (in '
                    f'`custom_hooks`) is not a multiple of the group size '
                    f'G={G}.')

    def before_train_epoch(self, runner) -> None:
        self._warned.clear()

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

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[Union[dict, tuple,
                                                     list]] = None) -> None:
        model = self._model(runner)
        model.log_step = self._will_log(runner, batch_idx)
        model.backbone.set_progress(runner.iter / max(runner.max_iters, 1))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        model = self._model(runner)
        if not model.log_step or not outputs:
            return
        backbone = model.backbone
        K = backbone.num_patches // backbone.group_size
        chance = K / (backbone.num_patches + 1)
        for key, value in outputs.items():
            if key.startswith('homo_prec_l') and \
                    float(value) < chance - self.prec_margin:
                self._warn(
                    runner, key, f'{key} = {float(value):.3f} is below '
                    f'chance ({chance:.3f} = K / (N + 1)): this homologous-'
                    'attention layer keeps mostly keys of other sources.')
        self._check_prior(runner, backbone, outputs, chance)
        homocon = getattr(model.head, 'homocon_loss', None)
        if homocon is not None and 'loss_homocon' in outputs:
            images = (runner.train_dataloader.batch_size //
                      backbone.group_size * backbone.num_views)
            floor = homocon.floor(backbone.num_patches, backbone.group_size,
                                  images)
            value = float(outputs['loss_homocon'])
            if floor > 0 and value <= floor * (1 + self.floor_margin):
                self._warn(
                    runner, 'loss_homocon',
                    f'loss_homocon = {value:.4f} is at its floor '
                    f'{floor:.4f} (sources clustered as well as unit '
                    'vectors can be): the features are already clustered '
                    'by source, HomoCon gives no more learning signal.')

    def _check_prior(self, runner, backbone, outputs: dict,
                     chance: float) -> None:
        """Warn when the precision comes from the source cue alone."""
        if 'homo_prec' not in outputs or \
                'homo_prec_content' not in outputs:
            return
        trained = float(outputs['homo_prec'])
        content = float(outputs['homo_prec_content'])
        if trained < chance + self.prior_margin or \
                content > chance + self.prec_margin:
            return
        keys = []
        if getattr(backbone, 'homo_bias_init', None) is not None:
            keys.append('`model.backbone.homo_bias`')
        if getattr(backbone, 'segment_embed_mode', None) is not None:
            keys.append('`model.backbone.segment_embed`')
        self._warn(
            runner, 'homo_prec_content',
            f'homo_prec = {trained:.3f} as trained, but homo_prec_content ='
            f' {content:.3f} from content alone (chance {chance:.3f}): the '
            'homologous recognition comes from the source prior set by '
            f"{' and '.join(keys) or 'a source cue'}, not from what the "
            'patches look like.')

    def after_train(self, runner) -> None:
        self._model(runner).log_step = True

    def _warn(self, runner, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            runner.logger.warning(f'MixedAEHook: {message}')
