"""Process groups for ``--launcher pytorch`` on machines with or without
CUDA (the tools' shared launcher code)."""
import datetime
from typing import Optional

import torch
import torch.distributed as torch_dist


def init_cpu_process_group(dist_cfg: Optional[dict] = None) -> None:
    """Create the default process group with gloo (torchrun's environment)
    when there is none yet.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, which fails
    without a GPU; this is its CPU stand-in. ``dist_cfg`` is the config's
    ``env_cfg.dist_cfg``: its backend is replaced by gloo (with a note when
    it said otherwise), a ``timeout`` in seconds is kept.
    """
    dist_cfg = dict(dist_cfg or {})
    if dist_cfg.pop('backend', 'gloo') != 'gloo':
        print('No CUDA device: using the gloo backend instead of '
              '`env_cfg.dist_cfg.backend`.')
    if 'timeout' in dist_cfg:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo', **dist_cfg)


def init_distributed(launcher: str, dist_cfg: Optional[dict] = None) -> None:
    """Start the process group of ``launcher`` (``none``: nothing): mmengine's
    ``init_dist`` with the config's ``env_cfg.dist_cfg``, or gloo for
    ``pytorch`` on a machine without CUDA."""
    if launcher == 'none' or torch_dist.is_initialized():
        return
    if launcher == 'pytorch' and not torch.cuda.is_available():
        init_cpu_process_group(dist_cfg)
        return
    from mmengine.dist import init_dist
    init_dist(launcher, **dict(dist_cfg or {}))


def setup_cpu_distributed(cfg) -> None:
    """Let a Runner with ``--launcher pytorch`` run on machines without CUDA
    (CPU clusters, tests, debugging) with the gloo backend.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP
    wrapper passes ``device_ids=[LOCAL_RANK]``; both fail without a GPU.
    Here the process group is created beforehand (the Runner then skips its
    own init) and DDP gets ``device_ids=None``, as CPU modules require.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    init_cpu_process_group(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper
