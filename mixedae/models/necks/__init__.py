from .mixedae_decoder import MixedAEPretrainDecoder

__all__ = ['MixedAEPretrainDecoder']
