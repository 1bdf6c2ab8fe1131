from .mixing import (check_mix_ratio, mix_images, patchify,
                     random_mixing_masks, unpatchify)

__all__ = [
    'check_mix_ratio', 'mix_images', 'patchify', 'random_mixing_masks',
    'unpatchify'
]
