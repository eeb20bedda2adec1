"""The checkpoint store: where a job's checkpoint waits between sites.

Sites do not share a file system. While a job runs, its agent uploads each new checkpoint (the
job's SUANLI_CHECKPOINT_DIR as a gzipped tar) to the controller, which keeps the newest one
per job in `<store>/<job id>.tar.gz` (the directory given by `suanli serve --checkpoint-store`,
default `<data dir>/checkpoints`; replicas of one service must share it, as they share the
database: a network file system or an object-store mount). A site that dies takes its disks
with it, but not the stored checkpoint: the job is re-placed, the agent of its new site
downloads the archive before starting it, and the job resumes from it.

The stored checkpoint is what failover credits: the work kept at preemption is the work up to
the stored checkpoint's hour, and the move from the site that made it to the new site is
priced as MODEL.md §5 prices data (`transfer_h`, `transfer_cny` of its bytes along the path
between the two sites' cities) and added to the next metered run's transfer cost.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from suanli.model.scenario import Scenario


class TooLarge(ValueError):
    """An upload past the store's limit (an undeclared length: the middleware checks declared ones)."""


class CheckpointStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def private(self) -> None:
        """The store's directory, created 0700 (its archives are 0600): no other user of the machine reads them."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.root.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            self.root.chmod(0o700)

    def path(self, job_id: int) -> Path:
        return self.root / f"{job_id}.tar.gz"

    def has(self, job_id: int) -> bool:
        return self.path(job_id).is_file()

    async def receive(self, job_id: int, stream, max_bytes: int | None = None) -> tuple[Path, int]:
        """Write an uploaded archive (an async iterable of byte chunks: the request body, streamed,
        never held in memory whole) to a temporary file of the store; `commit` or `discard` it.
        More than `max_bytes`: TooLarge, and nothing is kept."""
        self.private()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{job_id}.", suffix=".part")
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in stream:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"checkpoint: more than {max_bytes:,} bytes")
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp), size

    def commit(self, job_id: int, tmp: Path) -> None:
        """Make `tmp` the job's stored checkpoint, atomically (a reader sees the old archive or the
        new one, never half of one)."""
        os.replace(tmp, self.path(job_id))

    @staticmethod
    def discard(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)


def move_price(network: Scenario, from_site: str, to_site: str, nbytes: int) -> tuple[float, float]:
    """(hours, CNY) to move `nbytes` of checkpoint between two sites (MODEL.md §5)."""
    if from_site == to_site or from_site not in network.sites or to_site not in network.sites:
        return 0.0, 0.0
    p = network.network.path(network.sites[from_site].city, network.sites[to_site].city)
    if p is None:
        return 0.0, 0.0
    gb = nbytes / 1e9
    return p.transfer_h(gb), p.transfer_cny(gb)
