"""`suanli validate` on a big jobs file: the rows are streamed (memory flat in their number), the
errors are those of `load_scenario` (file, line, `jobs[i].field`, value) however far down the
file they are, and a long run shows its progress on stderr even when it is piped; `suanli sim`
too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from suanli.errors import ScenarioError
from suanli.model import validate
from suanli.model.load import load_scenario

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import big_jobs_csv  # noqa: E402

MB = 1024 * 1024


def _run_measured(args: list[str], env: dict | None = None) -> tuple[int, str, str]:
    """(peak RSS in KB of the child alone, stdout, stderr) of a `suanli` run: forked and reaped with
    os.wait4, whose rusage is that child's (RUSAGE_CHILDREN would be the largest of all children)."""
    with open(os.devnull, "rb") as stdin:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:                                  # the child: exec suanli with its output on the pipes
            os.dup2(stdin.fileno(), 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            os.execve(sys.executable, [sys.executable, "-m", "suanli", *args], {**os.environ, **(env or {})})
        os.close(out_w)
        os.close(err_w)
        with os.fdopen(out_r) as fo, os.fdopen(err_r) as fe:
            got = {}
            t = threading.Thread(target=lambda: got.setdefault("err", fe.read()))
            t.start()
            out = fo.read()
            t.join()
        _, status, usage = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, got["err"]
    return usage.ru_maxrss, out, got["err"]


def test_validate_memory_is_flat_in_the_rows_and_progress_shows_when_piped(tmp_path):
    small = big_jobs_csv.write(tmp_path / "50k", 50_000)
    big = big_jobs_csv.write(tmp_path / "200k", 200_000)
    rss_small, out, _ = _run_measured(["validate", str(small)])
    assert "50000 jobs" in out
    rss_big, out, err = _run_measured(["validate", str(big)], env={"SUANLI_PROGRESS_S": "0.3"})
    assert "200000 jobs" in out
    # loading every row (the way before) grew ~2.4 KB a row: 150,000 more rows were ~350 MB more;
    # streamed, what grows is 8 bytes a row of id digests (1.2 MB), well inside this margin
    assert rss_big - rss_small < 40 * 1024, (rss_small, rss_big)
    lines = err.strip().splitlines()
    assert lines, "no progress on a piped stderr"
    pattern = re.compile(r"^validate: reading jobs: [\d,]+ rows, \d+% of [\d.]+ MB, [\d,]+ s$")
    assert all(pattern.match(x) for x in lines), lines
    counts = [int(re.search(r"([\d,]+) rows", x).group(1).replace(",", "")) for x in lines]
    assert counts == sorted(counts) and counts[-1] <= 200_000


def test_a_short_validate_prints_no_progress(tmp_path):
    small = big_jobs_csv.write(tmp_path / "s", 1000)
    r = subprocess.run([sys.executable, "-m", "suanli", "validate", str(small)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "" and "1000 jobs" in r.stdout


def test_sim_shows_progress_when_piped(tmp_path):
    r = subprocess.run([sys.executable, "-m", "suanli", "sim", str(ROOT / "tests" / "data" / "tiny.yaml"),
                        "--policy", "fifo", "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       env={**os.environ, "SUANLI_PROGRESS_S": "0.001"})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines and all(x.startswith("sim: ") for x in lines), r.stderr
    assert "objective" in r.stdout                                  # the summary is on stdout, untouched
    q = subprocess.run([sys.executable, "-m", "suanli", "sim", str(ROOT / "tests" / "data" / "tiny.yaml"),
                        "--policy", "fifo", "--out", str(tmp_path / "q"), "--quiet"], capture_output=True, text=True,
                       env={**os.environ, "SUANLI_PROGRESS_S": "0.05"})
    assert q.returncode == 0 and q.stderr == "" and q.stdout == ""


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(validate, "BATCH", 7)         # errors past the first batches, with few rows


def _scenario(tmp_path: Path, rows: int, edit=None) -> Path:
    path = big_jobs_csv.write(tmp_path, rows)
    if edit:
        csv_path = tmp_path / "big.jobs.csv"
        lines = csv_path.read_text().splitlines(keepends=True)
        edit(lines)
        csv_path.write_text("".join(lines))
    return path


def _errors(path: Path) -> tuple[str, str]:
    """(the loader's error, the streaming check's error) for the same file."""
    with pytest.raises(ScenarioError) as whole:
        load_scenario(str(path))
    with pytest.raises(ScenarioError) as streamed:
        validate.check(str(path))
    return str(whole.value), str(streamed.value)


@pytest.mark.parametrize("what", ["pydantic", "origin", "duplicate", "duplicate-in-batch"])
def test_streamed_errors_are_the_loaders(tmp_path, small_batches, what):
    def edit(lines):
        if what == "pydantic":
            cells = lines[30].split(",")
            cells[3] = "-3"                                                          # gpus
            lines[30] = ",".join(cells)
        elif what == "origin":
            cells = lines[41].split(",")
            cells[8] = "atlantis"
            lines[41] = ",".join(cells)
        elif what == "duplicate":                     # a repeat of row 3's id, several batches later
            lines[52] = lines[3].split(",", 1)[0] + "," + lines[52].split(",", 1)[1]
        else:                                         # a repeat inside one batch
            lines[45] = lines[44].split(",", 1)[0] + "," + lines[45].split(",", 1)[1]
    path = _scenario(tmp_path, 80, edit)
    whole, streamed = _errors(path)
    assert whole == streamed
    assert re.search(r"big\.jobs\.csv:\d+: jobs\[\d+\]\.", streamed), streamed


def test_streamed_check_counts_jobs_and_warns_of_homeless_ones(tmp_path, small_batches):
    def edit(lines):
        for k in (10, 20, 60):
            cells = lines[k].split(",")
            cells[3] = "100000"                        # more GPUs than any pool
            lines[k] = ",".join(cells)
    path = _scenario(tmp_path, 75, edit)
    got = validate.check(str(path))
    scn = load_scenario(str(path))
    assert got.jobs == len(scn.jobs) == 75 and got.scenario.sites.keys() == scn.sites.keys()
    want = [(j.id, why) for j in scn.jobs if (why := validate.unhostable(scn, j)) is not None]
    assert got.homeless == want and got.homeless_count == 3
    assert [i for i, _ in want] == ["j-0000010", "j-0000020", "j-0000060"]
