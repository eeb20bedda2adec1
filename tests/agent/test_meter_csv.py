"""`csv:PATH`: the file checked whole at start-up, and replayed in time (real, sped up, shifted)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from suanli.agent.meters import open_sources, parse_spec
from suanli.agent.meters.csv_replay import CsvReplay, load
from suanli.errors import UserError

HEAD = "at,it_kw,facility_kw,renewable_kw,grid_kw,battery_soc_kwh\n"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def write(tmp_path, rows: list[str], head: str = HEAD):
    p = tmp_path / "meter.csv"
    p.write_text(head + "".join(r + "\n" for r in rows))
    return p


def minute_rows(n: int) -> list[str]:
    """n readings a minute apart from T0 (in +08:00: the file's zone is kept apart from UTC)."""
    out = []
    for i in range(n):
        at = (T0 + timedelta(minutes=i)).astimezone(datetime.fromisoformat("2026-01-01T00:00+08:00").tzinfo)
        out.append(f"{at.isoformat()},{100 + i},{130 + i},{20},{110 + i},{'' if i % 2 else 50 + i}")
    return out


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_rows_are_read_in_utc_with_an_empty_battery_as_none(tmp_path):
    rows = load(str(write(tmp_path, minute_rows(3))))
    assert [r.at for r in rows] == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert rows[0].at.tzinfo == UTC
    assert [r.battery_soc_kwh for r in rows] == [50.0, None, 52.0]
    assert rows[2].body() == {"at": "2026-03-01T08:02:00+00:00", "it_kw": 102.0, "facility_kw": 132.0,
                              "renewable_kw": 20.0, "grid_kw": 112.0, "battery_soc_kwh": 52.0}


def test_the_battery_column_may_be_missing(tmp_path):
    p = write(tmp_path, ["2026-03-01T08:00:00Z,1,1.5,0,1.5"], head="at,it_kw,facility_kw,renewable_kw,grid_kw\n")
    assert load(str(p))[0].battery_soc_kwh is None


@pytest.mark.parametrize("head, rows, says", [
    (HEAD, ["2026-03-01T08:00:00,1,2,0,2,"], "row 2, column at: Value error, must carry a time zone"),
    (HEAD, ["2026-03-01T08:00:00Z,-1,2,0,2,"], "row 2, column it_kw: Value error, must be >= 0, got -1.0"),
    (HEAD, ["2026-03-01T08:00:00Z,1,nan,0,2,"], "row 2, column facility_kw: Value error, must be a finite number"),
    (HEAD, ["2026-03-01T08:00:00Z,1,2,0,two,"], "row 2, column grid_kw: Input should be a valid number"),
    (HEAD, ["2026-03-01T08:00:00Z,1,2,0,2,-5"], "row 2, column battery_soc_kwh: Value error, must be >= 0"),
    (HEAD, ["2026-03-01T08:00:00Z,1,2,0,2,", "2026-03-01T08:00:00Z,1,2,0,2,"],
     "row 3, column at: 2026-03-01T08:00:00+00:00 is not after the row before"),
    (HEAD, ["2026-03-01T08:00:00Z,1,2,0,2,,9"], "row 2: more cells than columns"),
    ("at,it_kw,facility_kw,grid_kw\n", ["2026-03-01T08:00:00Z,1,2,2"], "no column 'renewable_kw'"),
    ("at,it_kw,facility_kw,renewable_kw,grid_kw,pue\n", [], "unknown column 'pue'"),
    (HEAD, [], "no rows"),
])
def test_a_bad_file_is_refused_at_start_up_naming_row_and_column(tmp_path, head, rows, says):
    p = write(tmp_path, rows, head)
    with pytest.raises(UserError) as e:
        open_sources([f"csv:{p}"])
    assert says in str(e.value)
    assert str(e.value).startswith(f"--meter csv:{p}: ")


def test_a_file_that_is_not_text_is_refused(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(UserError, match="not UTF-8 text"):
        load(str(p))


def test_real_time_replay_sends_each_row_when_its_time_has_come(tmp_path):
    cfg = parse_spec(f"csv:{write(tmp_path, minute_rows(4))}")
    clock = Clock()
    src = CsvReplay(cfg, load(cfg.path), clock=clock)
    assert [s.at for s in src.poll()] == [T0]             # the first row at the first poll
    clock.t += 59.9
    assert src.poll() == []
    clock.t += 0.1
    assert [s.it_kw for s in src.poll()] == [101.0]
    clock.t += 3600
    assert [s.it_kw for s in src.poll()] == [102.0, 103.0]
    assert src.finished and src.poll() == []


def test_a_speed_up_replays_an_hour_a_minute(tmp_path):
    cfg = parse_spec(f"csv:{write(tmp_path, minute_rows(61))},speed=60")
    clock = Clock()
    src = CsvReplay(cfg, load(cfg.path), clock=clock)
    assert len(src.poll()) == 1
    clock.t += 30                                          # half an hour replayed
    got = src.poll()
    assert [s.at for s in got] == [T0 + timedelta(minutes=m) for m in range(1, 31)]
    clock.t += 30
    assert len(src.poll()) == 30 and src.finished


def test_shift_now_at_real_time_stamps_each_row_when_it_is_sent(tmp_path):
    cfg = parse_spec(f"csv:{write(tmp_path, minute_rows(3))},shift=now")
    clock, wall0 = Clock(), datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    src = CsvReplay(cfg, load(cfg.path), clock=clock, wall=lambda: wall0)
    assert [s.at for s in src.poll()] == [wall0]
    clock.t += 120
    assert [s.at for s in src.poll()] == [wall0 + timedelta(minutes=1), wall0 + timedelta(minutes=2)]


def test_shift_now_with_a_speed_up_never_stamps_a_row_in_the_future(tmp_path):
    cfg = parse_spec(f"csv:{write(tmp_path, minute_rows(61))},speed=60,shift=now")
    clock, wall0 = Clock(), datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    src = CsvReplay(cfg, load(cfg.path), clock=clock, wall=lambda: wall0)
    sent = []
    for _ in range(7):                                    # a poll every 10 s of wall time
        wall = wall0 + timedelta(seconds=clock.t - 1000.0)
        got = src.poll()
        assert all(s.at <= wall for s in got), (got, wall)
        sent += got
        clock.t += 10
    assert len(sent) == 61
    assert sent[-1].at == wall0 + timedelta(seconds=60)   # the last row: stamped the moment it is sent
    assert [b.at - a.at for a, b in zip(sent, sent[1:], strict=False)] == [timedelta(minutes=1)] * 60


def test_a_replay_runs_on_the_wall_clock_by_default(tmp_path):
    src = open_sources([f"csv:{write(tmp_path, minute_rows(3))},speed=600"]).sources[0]
    assert len(src.poll()) == 1
    time.sleep(0.25)                                      # 150 s replayed: two more rows
    assert len(src.poll()) == 2
