"""MixedAE: Mixed Autoencoder for self-supervised visual pre-training.

Importing the package registers its modules into mmpretrain's registries;
configs load it with ``custom_imports=dict(imports=['mixedae'])``.
"""
from . import datasets, engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
