from .homologous_contrastive_loss import (HomologousContrastiveLoss,
                                          homocon_floor)

__all__ = ['HomologousContrastiveLoss', 'homocon_floor']
