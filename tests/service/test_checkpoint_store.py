"""The checkpoint store on its own: atomic replacement, the size limit on an undeclared-length
upload, and the price of moving a checkpoint between sites (MODEL.md §5)."""

from __future__ import annotations

import asyncio

import pytest
from svc import NETWORK

from suanli.service.checkpoints import CheckpointStore, TooLarge, move_price
from suanli.service.server import load_network


async def _chunks(*parts: bytes):
    for p in parts:
        yield p


def test_an_upload_replaces_the_stored_archive_whole_or_not_at_all(tmp_path):
    store = CheckpointStore(tmp_path / "store")
    tmp, size = asyncio.run(store.receive(7, _chunks(b"abc", b"def")))
    assert size == 6 and not store.has(7)            # not visible before commit
    store.commit(7, tmp)
    assert store.path(7).read_bytes() == b"abcdef"
    with pytest.raises(TooLarge):
        asyncio.run(store.receive(7, _chunks(b"x" * 10, b"y" * 10), max_bytes=15))
    assert store.path(7).read_bytes() == b"abcdef"   # the old one stays
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["7.tar.gz"]    # no part file left


def test_moving_a_checkpoint_is_priced_as_data_on_the_path_between_the_sites():
    net = load_network(NETWORK)              # beijing - hami: 10 Gbps, 0.05 CNY/GB
    hours, cny = move_price(net, "east-1", "west-1", 2_000_000_000)
    assert hours == pytest.approx(2 * 8 / 10 / 3600) and cny == pytest.approx(0.10)
    assert move_price(net, "west-1", "west-1", 2_000_000_000) == (0.0, 0.0)
