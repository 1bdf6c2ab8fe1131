# The runtime of every MixedAE pre-training: mmpretrain's defaults plus
# the guards, which every MixedAE pre-training runs with.
_base_ = ['./default_runtime.py']

# The guards live in `default_hooks` under named keys, not in
# `custom_hooks`: mmengine merges a derived config's dicts into these but
# replaces lists, so a derived `custom_hooks = [...]` cannot drop them.
# `default_hooks.<key>=None` (e.g. `--cfg-options default_hooks.rng_state=
# None`) is the one way to turn a guard off. MixedAERunner (`runner_type`,
# built by tools/train.py) adds a guard the config lacks (a `default_hooks`
# with `_delete_=True`) and says so in the log, and registers a guard
# listed again in `custom_hooks` only once (mixedae/engine/runner.py).
# - mixedae (MixedAEHook): the training step never waits for the device
#   (losses are summed on it and printed as means since the previous log
#   line, the homologous precision is computed only on printed iterations),
#   batch sizes checked before training, and the log warns when a layer's
#   precision is below chance or HomoCon sits at its floor;
# - rng_state (RNGStateHook): every rank's RNG states in the checkpoints,
#   so a resumed run draws the same masks and crops (see its docstring for
#   the workers);
# - resume_check (ResumeConfigCheckHook): a resume under a config whose
#   model, data, optimiser or schedule differ from the checkpoint's stops
#   with an error listing the keys (`--cfg-options
#   resume_config_check=False` to resume anyway, with the check's warning);
# - divergence (DivergenceHook): a non-finite loss term (checked on logged
#   iterations, over the whole interval), non-finite weights before a
#   checkpoint, or a collapsed AMP loss scale stop the run with a one-line
#   error naming the iteration, the term and the last checkpoint with
#   finite weights; no checkpoint with non-finite weights is written.
runner_type = 'MixedAERunner'
default_hooks = dict(
    mixedae=dict(type='MixedAEHook'),
    rng_state=dict(type='RNGStateHook'),
    resume_check=dict(type='ResumeConfigCheckHook'),
    divergence=dict(type='DivergenceHook'),
)
# not guards: img_per_sec in the log
custom_hooks = [dict(type='ThroughputHook')]
# the losses arrive already averaged over the logging interval: print them
# as they are (mmengine's default pattern would average them again over
# its window of 10 log lines); time is still smoothed
log_processor = dict(mean_pattern=r'.*(time|data_time|grad_norm).*')
