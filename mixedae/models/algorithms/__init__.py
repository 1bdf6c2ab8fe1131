from .mixedae import MixedAE

__all__ = ['MixedAE']
