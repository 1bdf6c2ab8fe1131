"""Frozen-feature evaluation: k-NN and linear probes on frozen features,
and the feature extraction behind them, shared by
``tools/analysis_tools/eval_knn_linear.py`` and the Fashion-MNIST study."""
from .features import (FEATURES, FeatureCache, FrozenViT, build_frozen_vit,
                       extract_features, feature_key, file_digest,
                       load_encoder_strictly, load_vit_checkpoint)
from .frozen import knn_classify, linear_probe, top1

__all__ = [
    'knn_classify', 'linear_probe', 'top1', 'FEATURES', 'FeatureCache',
    'FrozenViT', 'build_frozen_vit', 'extract_features', 'feature_key',
    'file_digest', 'load_encoder_strictly', 'load_vit_checkpoint'
]
