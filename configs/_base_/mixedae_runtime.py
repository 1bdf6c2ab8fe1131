# What every MixedAE pre-training adds to the runtime:
# - MixedAEHook: the training step never waits for the device (losses are
#   summed on it and printed as means since the previous log line, the
#   homologous precision is computed only on printed iterations), and the
#   log warns when a layer's precision is below chance or HomoCon sits at
#   its floor;
# - ThroughputHook: img_per_sec in the log;
# - RNGStateHook: every rank's RNG states in the checkpoints, so a resumed
#   run draws the same masks and crops (see its docstring for the workers);
# - ResumeConfigCheckHook: a resume under a config whose model, data,
#   optimiser or schedule differ from the checkpoint's stops with an error
#   listing the keys (`--cfg-options resume_config_check=False` to resume
#   anyway).
custom_hooks = [
    dict(type='MixedAEHook'),
    dict(type='ThroughputHook'),
    dict(type='RNGStateHook'),
    dict(type='ResumeConfigCheckHook'),
]
# the losses arrive already averaged over the logging interval: print them
# as they are (mmengine's default pattern would average them again over
# its window of 10 log lines); time is still smoothed
log_processor = dict(mean_pattern=r'.*(time|data_time|grad_norm).*')
