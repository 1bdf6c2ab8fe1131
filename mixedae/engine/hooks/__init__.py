from .mixing_visualization_hook import MixingVisualizationHook

__all__ = ['MixingVisualizationHook']
