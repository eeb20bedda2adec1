"""The agent's side of the checkpoint store (service/checkpoints.py), built so that nothing a
job puts in its checkpoint directory, and nothing an archive from the store holds, can stop the
agent or the site's other jobs:

- packing reads only regular files (a symbolic link, a FIFO or a device in the directory is
  skipped, never followed), sums their sizes before packing and refuses a directory over the
  agent's cap (a 4 GiB sparse file is 4 GiB), and runs in a worker thread beside the heartbeat
  loop, bounded in time: the loop keeps heartbeating every interval while a big checkpoint is
  packed or uploaded;
- the archive is written in the agent's own directory (`<workdir>/<site>/tmp`), emptied when the
  agent starts, never in the machine's temporary directory;
- a download is bounded (its size, and the total size of the files it unpacks to), and
  unpacking admits only regular files and directories with relative names that stay inside the
  job's checkpoint directory: a link (symbolic or hard), an absolute name, `..`, a device or a
  FIFO makes the archive bad, and a bad archive fails the job's resume (it starts afresh, the
  reason in its RUNNING report), never the agent.

A `Task` runs one such piece of work in a daemon thread: the loop polls it, and on exit abandons
it (it is cancelled at its next read; a daemon thread never holds the process up).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from suanli.errors import UserError

CHUNK = 1024 * 1024
MAX_MEMBERS = 100_000            # files and directories in one archive
COMPRESSLEVEL = 1                # checkpoints are mostly numbers: speed over a few percent of size
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(text: str | int, what: str = "--max-checkpoint-bytes") -> int:
    """A size in bytes from `8GiB`, `500MB`, `1048576`; a UserError naming `what` otherwise."""
    if isinstance(text, int):
        n = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise UserError(f"{what}: not a size (got {text!r}; e.g. 8GiB, 500MB, 1048576)")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n < 1:
        raise UserError(f"{what}: must be at least 1 byte (got {text!r})")
    return n


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class Cancelled(Exception):
    """The work was cancelled (the agent stops) or ran past its deadline."""


class BadArchive(Exception):
    """A checkpoint archive the agent refuses to unpack (the reason is the message)."""


@dataclass
class Stop:
    """Cancellation of one piece of work: `event` set by the agent, or `deadline` (monotonic) past."""
    event: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled("cancelled: the agent stops")
        if time.monotonic() > self.deadline:
            raise Cancelled("took too long")


class _Reader:
    """A file object whose reads check a `Stop` (tarfile copies through it)."""

    def __init__(self, f, stop: Stop):
        self.f, self.stop = f, stop

    def read(self, n: int = -1) -> bytes:
        self.stop.check()
        return self.f.read(CHUNK if n is None or n < 0 else min(n, CHUNK))


# ------------------------------------------------------------------------------------------- packing
@dataclass
class Scan:
    files: list[tuple[str, int]]          # (name relative to the directory, size), regular files only
    total: int                            # the sum of their sizes (apparent: a sparse file counts whole)
    newest: float | None                  # the newest file's modification time
    skipped: int                          # entries neither a regular file nor a directory


def scan(directory: str | Path, limit_files: int = MAX_MEMBERS) -> Scan:
    """The regular files under `directory`, never following a link."""
    root = Path(directory)
    files, total, newest, skipped = [], 0, None, 0
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue                      # gone while we looked, or unreadable
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(e.path))
            elif stat.S_ISREG(st.st_mode):
                files.append((Path(e.path).relative_to(root).as_posix(), st.st_size))
                total += st.st_size
                newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
                if len(files) > limit_files:
                    return Scan(files, total, newest, skipped)
            else:
                skipped += 1
    files.sort()
    return Scan(files, total, newest, skipped)


def pack(directory: str | Path, files: list[tuple[str, int]], archive: Path, stop: Stop) -> bool:
    """The listed files as a gzipped tar at `archive`; False if one changed under us (try later:
    jobs should write a checkpoint to a temporary name and rename it, docs/SITES.md). Each file
    is opened without following a link and must still be a regular file."""
    root = Path(directory)
    try:
        with tarfile.open(archive, "w:gz", compresslevel=COMPRESSLEVEL) as tar:
            tar.copybufsize = CHUNK
            for name, _ in files:
                stop.check()
                try:
                    fd = os.open(root / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except FileNotFoundError:
                    continue                      # replaced meanwhile: the next pass takes the new one
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
                    tar.addfile(info, _Reader(f, stop))
    except (OSError, tarfile.TarError) as e:
        archive.unlink(missing_ok=True)
        if isinstance(e, FileNotFoundError) or "unexpected end of data" in str(e):   # a file shrank while read
            raise Changed(str(e)) from None
        raise
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    return True


class Changed(Exception):
    """A checkpoint file changed (or vanished) while it was packed: next time."""


# ------------------------------------------------------------------------------------------- unpacking
def unpack(archive: Path, directory: Path, max_bytes: int, stop: Stop | None = None,
           max_members: int = MAX_MEMBERS) -> int:
    """Replace `directory`'s content by the archive's; returns the bytes unpacked. BadArchive (and
    `directory` left empty) if the archive holds anything but regular files and directories under
    relative names inside it, more than `max_bytes` in all or more than `max_members` entries,
    or is not a readable gzipped tar."""
    stop = stop or Stop()
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    total = members = 0
    try:
        with tarfile.open(archive, "r|gz") as tar:           # one pass over the stream
            for m in tar:
                stop.check()
                members += 1
                if members > max_members:
                    raise BadArchive(f"more than {max_members:,} entries")
                parts = _safe_parts(m.name)
                if m.isdir():
                    directory.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                    continue
                if not m.isreg():
                    kind = ("a symbolic link" if m.issym() else "a hard link" if m.islnk() else
                            "a FIFO" if m.isfifo() else "a device" if m.isdev() else f"an entry of type {m.type!r}")
                    raise BadArchive(f"{m.name!r} is {kind}: a checkpoint holds only files and directories")
                total += m.size
                if total > max_bytes:
                    raise BadArchive(f"unpacks to more than {human(max_bytes)} (--max-checkpoint-bytes)")
                dest = directory.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        stop.check()
                        out.write(chunk)
    except BadArchive:
        _empty(directory)
        raise
    except Cancelled:
        _empty(directory)
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeError) as e:
        _empty(directory)
        raise BadArchive(f"not a readable gzipped tar ({type(e).__name__}: {e})") from None
    return total


def _safe_parts(name: str) -> list[str]:
    if "\x00" in name:
        raise BadArchive(f"{name!r}: a NUL byte in a name")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")):
        raise BadArchive(f"{name!r} is an absolute path")
    parts = [x for x in p.parts if x not in ("", ".")]
    if ".." in parts:
        raise BadArchive(f"{name!r} leaves the checkpoint directory (..)")
    if not parts:
        raise BadArchive(f"{name!r}: an empty name")
    return parts


def _empty(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def download(client, path: str, dest: Path, params: dict, max_bytes: int, stop: Stop) -> int:
    """GET the stored archive to `dest`, streamed, at most `max_bytes` (else BadArchive, nothing kept)."""
    import httpx
    size = 0
    try:
        with client.http.stream("GET", client.url + path, params=params) as r:
            if r.status_code >= 400:
                r.read()
                try:
                    detail = r.json().get("detail", r.text)
                except ValueError:
                    detail = r.text
                raise UserError(f"{r.status_code}: {detail}")
            declared = r.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise BadArchive(f"{int(declared):,} bytes to download, over the agent's cap of {human(max_bytes)}")
            with open(dest, "wb") as f:
                for chunk in r.iter_bytes(CHUNK):
                    stop.check()
                    size += len(chunk)
                    if size > max_bytes:
                        raise BadArchive(f"more than {human(max_bytes)} to download (--max-checkpoint-bytes)")
                    f.write(chunk)
    except httpx.HTTPError as e:
        dest.unlink(missing_ok=True)
        raise UserError(f"cannot reach {client.url}: {e}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return size


def upload(client, path: str, archive: Path, params: dict, stop: Stop) -> Any:
    """PUT the archive, streamed from disk through `stop` (a declared length: the API's door checks it)."""
    size = archive.stat().st_size

    def body():
        with open(archive, "rb") as f:
            while chunk := f.read(CHUNK):
                stop.check()
                yield chunk
    return client.call("PUT", path, params=params, content=body(),
                       headers={"Content-Type": "application/gzip", "Content-Length": str(size)})


# ------------------------------------------------------------------------------------------- tasks
class Task:
    """`fn(stop)` in a daemon thread; `done()`, then `result` or `error`. `abandon()` cancels it:
    it ends at its next check, and a thread stuck in a system call never holds the agent up."""

    def __init__(self, name: str, fn: Callable[[Stop], Any], timeout_s: float):
        self.stop = Stop(deadline=time.monotonic() + timeout_s)
        self.started = time.monotonic()
        self.timeout_s = timeout_s
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn) -> None:
        try:
            self.result = fn(self.stop)
        except BaseException as e:          # noqa: BLE001 - handed to the loop, which decides
            self.error = e
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def overdue(self, grace_s: float = 10.0) -> bool:
        """Still running well past its deadline (stuck in a system call the checks cannot reach)."""
        return not self.done() and time.monotonic() - self.started > self.timeout_s + grace_s

    def abandon(self) -> None:
        self.stop.event.set()


def clean(tmpdir: Path) -> int:
    """Remove what a previous agent left in its own temporary directory; the number removed."""
    n = 0
    if tmpdir.is_dir():
        for p in tmpdir.iterdir():
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                n += 1
            except OSError:
                pass
    tmpdir.mkdir(parents=True, exist_ok=True)
    return n
