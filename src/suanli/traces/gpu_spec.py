"""Alibaba `gpu_spec` GPU models -> the scenario's GPU types (docs/TRACES.md has the table).

The 2023 cluster's models are a generation older than the network's, and three are
undisclosed (G1-G3), so the mapping is by tier, not by name: the newest 8-GPU training nodes
to the fast type, V100-class training GPUs to the reference type, older and inference cards
(P100, T4, A10) to the economy type. It is an assumption; `--gpu-map` replaces any entry.
"""

from __future__ import annotations

from suanli.errors import UserError

# model -> scenario GPU types that may stand in for it (defaults fit the demo network)
DEFAULT_GPU_MAP: dict[str, tuple[str, ...]] = {
    "G3": ("h100",),        # undisclosed; 312 GPUs on 8-GPU nodes, assumed the newest tier
    "G2": ("a800",),        # undisclosed; 4,392 GPUs on 8-GPU nodes, the cluster's workhorse
    "G1": ("a800",),        # undisclosed; named in the trace's paper, absent from the node list
    "V100M32": ("a800",),   # V100 32 GB: the training card of its generation
    "V100M16": ("a800",),   # V100 16 GB
    "P100": ("910b",),      # older training card
    "T4": ("910b",),        # inference card
    "A10": ("910b",),       # inference card
}


def parse_gpu_map(text: str | None, gpu_types: list[str], base: dict[str, tuple[str, ...]] | None = None,
                  option: str = "--gpu-map") -> dict[str, tuple[str, ...]]:
    """`MODEL=type[;type],...` over the defaults; every type must be one of `gpu_types`."""
    table = dict(DEFAULT_GPU_MAP if base is None else base)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        model, sep, targets = item.partition("=")
        types = tuple(t.strip() for t in targets.replace("|", ";").split(";") if t.strip())
        if not sep or not model.strip() or not types:
            raise UserError(f"{option}: not MODEL=type like T4=910b (got {item.strip()!r})")
        table[model.strip()] = types
    for model, types in table.items():
        for t in types:
            if t not in gpu_types:
                raise UserError(f"{option}: {model}={t} names a GPU type that is not in --gpu-types "
                                f"({', '.join(gpu_types)}); map it with --gpu-map {model}=TYPE")
    return table


def map_spec(spec: str, table: dict[str, tuple[str, ...]], order: list[str]) -> tuple[str, ...] | None:
    """Allowed scenario types for a `|`-separated spec ('' = any); KeyError names an unknown model."""
    models = [m.strip() for m in spec.split("|") if m.strip()]
    if not models:
        return None
    allowed = {t for m in models for t in table[m]}
    return tuple(t for t in order if t in allowed)
