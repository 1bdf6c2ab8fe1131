from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks
from .runner import GUARDS, MixedAERunner, place_guards

__all__ = _hooks + ['GUARDS', 'MixedAERunner', 'place_guards']
