from .homologous_attention import HomologousAttention, homologous_precision
from .pretrained_init import CheckedPretrainedInit

__all__ = [
    'CheckedPretrainedInit', 'HomologousAttention', 'homologous_precision'
]
