"""`nvml[,pue=F]`: the power of this host's NVIDIA GPUs, read through NVML (nvidia-ml-py's `pynvml`).

At each poll: every GPU's `nvmlDeviceGetPowerUsage` (mW; the board's power draw, averaged by the
driver over about a second), summed: `it_kw`; with `pue=F`, `facility_kw` = `it_kw` times F.
Each sample also carries every GPU's watts by its NVML index (`Sample.gpu_w`; `per_gpu_w` keeps
the last poll's): the agent integrates them into each local run's GPU energy (agent/gpu_energy.py).

A host without an NVIDIA GPU (no driver, no library, no device) cannot use this source: it is
said in one line at start-up (MeterUnavailable: exit code 2), not discovered at the first poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanli.agent.meters.base import MeterError, MeterUnavailable, Options, Sample, now
from suanli.errors import UserError

OPTIONS = ("pue",)


@dataclass(frozen=True)
class NvmlConfig:
    pue: float | None = None

    def open(self) -> NvmlSource:
        return NvmlSource(self)


def parse(target: str, opts: Options) -> NvmlConfig:
    if target:
        raise UserError(f"--meter {opts.spec!r}: nvml takes no target (nvml or nvml,pue=1.3)")
    pue = opts.number("pue", None, 1.0, 5.0)
    opts.done(OPTIONS)
    return NvmlConfig(pue)


def gpu_count() -> tuple[int, str]:
    """(how many NVIDIA GPUs NVML sees, why none when 0). Leaves NVML initialised when > 0."""
    try:
        import pynvml
    except ImportError:
        return 0, "the nvidia-ml-py package is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return 0, f"NVML cannot start: {e}"
    try:
        n = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as e:
        pynvml.nvmlShutdown()
        return 0, f"NVML cannot count the GPUs: {e}"
    if n == 0:
        pynvml.nvmlShutdown()
        return 0, "NVML sees no GPU"
    return n, ""


class NvmlSource:
    replay = False
    per_gpu = True

    def __init__(self, config: NvmlConfig):
        n, why = gpu_count()
        if n == 0:
            raise MeterUnavailable(f"--meter nvml: no NVIDIA GPU on this host ({why}): this source cannot be used")
        import pynvml
        self.nvml = pynvml
        self.name = "nvml"
        self.config = config
        self.measures = frozenset({"it_kw"} | ({"facility_kw"} if config.pue else set()))
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
        self.per_gpu_w: dict[int, float] = {}

    def poll(self) -> list[Sample]:
        watts = {}
        for i, h in enumerate(self.handles):
            try:
                watts[i] = self.nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            except self.nvml.NVMLError as e:
                raise MeterError(f"GPU {i}: cannot read its power: {e}") from None
        self.per_gpu_w = watts
        it = sum(watts.values()) / 1000.0
        facility = it * self.config.pue if self.config.pue else None
        return [Sample(at=now(), it_kw=it, facility_kw=facility, gpu_w=dict(watts))]

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass
