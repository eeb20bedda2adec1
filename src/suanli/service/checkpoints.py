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

The store is bounded (docs/RELIABILITY.md):
- each tenant may keep `quota_bytes` in all (`suanli serve --checkpoint-quota-bytes`): an upload
  that would pass it is refused with 507 as soon as its stream passes it (`OverQuota`);
- a full disk (ENOSPC, EDQUOT while writing) refuses the upload with 507 (`StoreFull`), never a
  500, and removes the partial file;
- a job's checkpoint is deleted `keep_h` after the job ended (`--checkpoint-keep-h`), by the
  controller's periodic `sweep`, which also removes `.part` files older than `PART_MAX_AGE_S`
  (left by a controller that was killed mid-upload; younger ones may be a replica's upload).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from suanli.model.scenario import Scenario
from suanli.service.models import Job as JobRow

log = logging.getLogger("suanli.checkpoints")
PART_MAX_AGE_S = 600.0          # a `.part` file older than this is left by a killed controller
SWEEP_EVERY_S = 60.0
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")
_ARCHIVE = re.compile(r"^(\d+)\.tar\.gz$")


class TooLarge(ValueError):
    """An upload past the store's limit (an undeclared length: the middleware checks declared ones)."""


class OverQuota(ValueError):
    """An upload that would take its tenant past the store's per-tenant quota."""


class StoreFull(OSError):
    """The store's disk is full (ENOSPC) or its quota on the file system is spent (EDQUOT)."""


FULL = (errno.ENOSPC, errno.EDQUOT)


class CheckpointStore:
    def __init__(self, root: Path, quota_bytes: int | None = None, keep_h: float = 24.0):
        self.root = Path(root)
        self.quota_bytes = quota_bytes      # per tenant, all its jobs' stored checkpoints; None: no limit
        self.keep_h = keep_h                # a checkpoint is deleted this long after its job ended
        self._next_sweep = 0.0

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

    async def receive(self, job_id: int, stream, max_bytes: int | None = None,
                      quota_left: int | None = None) -> tuple[Path, int]:
        """Write an uploaded archive (an async iterable of byte chunks: the request body, streamed,
        never held in memory whole) to a temporary file of the store; `commit` or `discard` it.
        More than `max_bytes`: TooLarge; more than `quota_left` (what the tenant's quota leaves):
        OverQuota; the disk full: StoreFull. Then nothing is kept."""
        tmp = None
        size = 0
        try:
            self.private()
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{job_id}.", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                async for chunk in stream:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"checkpoint: more than {max_bytes:,} bytes")
                    if quota_left is not None and size > quota_left:
                        raise OverQuota(f"checkpoint: the tenant's checkpoint quota ({self.quota_bytes:,} bytes) "
                                        f"leaves {max(quota_left, 0):,} bytes for this job; upload refused")
                    self._write(f, chunk)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if e.errno in FULL:
                log.error("checkpoint store %s is full (%s): upload of job %s refused", self.root,
                          os.strerror(e.errno), job_id)
                raise StoreFull(e.errno, f"checkpoint: the store is full ({os.strerror(e.errno)}); "
                                         "upload refused, try later") from None
            raise
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp), size

    @staticmethod
    def _write(f, chunk: bytes) -> None:
        f.write(chunk)                 # a seam: tests make it raise ENOSPC

    # ------------------------------------------------------------------ bounds
    @staticmethod
    def stored_bytes(s: Session, tenant_id: int, but: int | None = None) -> int:
        """The bytes the store holds for `tenant_id`'s jobs (less job `but`'s, which an upload replaces)."""
        q = select(func.coalesce(func.sum(JobRow.checkpoint_bytes), 0)).where(
            JobRow.tenant_id == tenant_id, JobRow.checkpoint_site.is_not(None))
        if but is not None:
            q = q.where(JobRow.id != but)
        return int(s.scalar(q) or 0)

    def quota_left(self, s: Session, tenant_id: int, job_id: int) -> int | None:
        if self.quota_bytes is None:
            return None
        return self.quota_bytes - self.stored_bytes(s, tenant_id, but=job_id)

    def sweep(self, s: Session, force: bool = False) -> list[int]:
        """Delete the checkpoints of jobs that ended more than `keep_h` ago (and archives of jobs the
        database does not know, as old), and `.part` files older than PART_MAX_AGE_S. At most every
        SWEEP_EVERY_S unless `force`; the first call (the controller's first tick) sweeps. Returns
        the jobs whose checkpoint was deleted."""
        t = time.monotonic()
        if not force and t < self._next_sweep:
            return []
        self._next_sweep = t + SWEEP_EVERY_S
        wall = time.time()
        found: dict[int, Path] = {}
        for p in (self.root.iterdir() if self.root.is_dir() else ()):
            try:
                if p.name.endswith(".part") and wall - p.stat().st_mtime > PART_MAX_AGE_S:
                    p.unlink(missing_ok=True)
                    log.info("removed %s, left by an upload that never finished", p.name)
                    continue
            except OSError:
                continue                # gone meanwhile (a replica's sweep, or its upload ended)
            m = _ARCHIVE.match(p.name)
            if m:
                found[int(m.group(1))] = p
        cutoff = datetime.now(UTC) - timedelta(hours=self.keep_h)
        gone: list[int] = []
        ids = sorted(found)
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            known = {i: (state, at) for i, state, at in s.execute(
                select(JobRow.id, JobRow.state, JobRow.updated_at).where(JobRow.id.in_(chunk)))}
            for i in chunk:
                if i in known:
                    state, at = known[i]
                    at = at if at.tzinfo else at.replace(tzinfo=UTC)
                    if state not in ENDED or at >= cutoff:
                        continue
                else:
                    try:
                        if wall - found[i].stat().st_mtime < self.keep_h * 3600.0:
                            continue
                    except OSError:
                        continue
                found[i].unlink(missing_ok=True)
                gone.append(i)
        # no stored checkpoint counts against its tenant's quota any more (nor is one resumed from)
        s.execute(update(JobRow).where(JobRow.state.in_(ENDED), JobRow.checkpoint_site.is_not(None),
                                       JobRow.updated_at < cutoff)
                  .values(checkpoint_site=None).execution_options(synchronize_session=False))
        if gone:
            log.info("deleted the stored checkpoints of %d ended job(s), kept %g h after their end", len(gone),
                     self.keep_h)
        return gone

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
