from .mixedae_vit import MixedAEViT

__all__ = ['MixedAEViT']
