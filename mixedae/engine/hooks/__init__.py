from .mixing_visualization_hook import MixingVisualizationHook
from .rng_state_hook import RNGStateHook
from .throughput_hook import ThroughputHook

__all__ = ['MixingVisualizationHook', 'RNGStateHook', 'ThroughputHook']
