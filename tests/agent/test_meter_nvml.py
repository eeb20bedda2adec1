"""`nvml`: the host's NVIDIA GPUs' power through NVML. Reading one needs a GPU: skipped without."""

from __future__ import annotations

import pytest

from suanli.agent.meters import MeterUnavailable, parse_spec
from suanli.agent.meters.nvml import gpu_count

GPUS, WHY = gpu_count()


@pytest.mark.skipif(GPUS == 0, reason=f"no NVIDIA GPU on this host ({WHY})")
def test_each_gpus_power_is_read_and_summed_into_it_kw():
    src = parse_spec("nvml,pue=1.2").open()
    try:
        [s] = src.poll()
        assert len(src.per_gpu_w) == GPUS
        assert all(0 < w < 2000 for w in src.per_gpu_w.values())          # an idle GPU draws tens of W
        assert s.it_kw == pytest.approx(sum(src.per_gpu_w.values()) / 1000)
        assert s.facility_kw == pytest.approx(s.it_kw * 1.2)
    finally:
        src.close()


@pytest.mark.skipif(GPUS > 0, reason="this host has an NVIDIA GPU")
def test_without_a_gpu_the_source_says_so_in_one_line_and_cannot_be_opened():
    with pytest.raises(MeterUnavailable) as e:
        parse_spec("nvml").open()
    msg = str(e.value)
    assert msg.startswith("--meter nvml: no NVIDIA GPU on this host (") and "\n" not in msg
