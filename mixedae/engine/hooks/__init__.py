from .divergence_hook import DivergenceHook, TrainingDiverged
from .mixedae_hook import MixedAEHook
from .mixing_visualization_hook import MixingVisualizationHook
from .resume_config_check_hook import ResumeConfigCheckHook
from .rng_state_hook import RNGStateHook
from .throughput_hook import ThroughputHook

__all__ = [
    'DivergenceHook', 'MixedAEHook', 'MixingVisualizationHook',
    'ResumeConfigCheckHook', 'RNGStateHook', 'ThroughputHook',
    'TrainingDiverged'
]
