"""Config overrides that replace whole specs."""
import copy


def merge_whole(cfg, overrides: dict) -> None:
    """``cfg.merge_from_dict(overrides)`` where a dict value is a whole
    spec: it replaces what ``cfg`` has at its key (``_delete_``), also where
    ``cfg`` has None there, instead of merging into it key by key. So an
    override means the same whatever the config's defaults are."""
    cfg.merge_from_dict({
        key: dict(value, _delete_=True) if isinstance(value, dict) else value
        for key, value in copy.deepcopy(overrides).items()})
