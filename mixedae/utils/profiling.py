"""Measuring what autograd keeps for backward."""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch


@contextmanager
def saved_tensor_bytes(square: Optional[int] = None
                       ) -> Iterator[Dict[str, int]]:
    """Count the bytes autograd saves for backward inside the block.

    Yields a dict filled while the block runs: ``total``, the bytes of
    every saved tensor, and ``square``, those of the tensors whose last two
    dimensions are both ``square`` (e.g. T, for tensors of an attention
    map's shape). A storage saved several times (views of one tensor, or
    one tensor saved by two ops) counts once.

    Args:
        square (int, optional): the size of the trailing (square, square)
            dimensions to single out.
    """
    counts = dict(total=0, square=0)
    seen = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.dtype, tuple(t.shape))
        if key not in seen:
            seen.add(key)
            size = t.numel() * t.element_size()
            counts['total'] += size
            if square is not None and t.dim() >= 2 and \
                    tuple(t.shape[-2:]) == (square, square):
                counts['square'] += size
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield counts
