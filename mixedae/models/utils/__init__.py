from .homologous_attention import HomologousAttention, homologous_precision

__all__ = ['HomologousAttention', 'homologous_precision']
