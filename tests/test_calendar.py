"""The pool calendar: exact earliest-fit over a step function of GPUs in use."""

from suanli.scheduling.calendar import PoolCalendar


def test_empty_pool_fits_at_once():
    cal = PoolCalendar(8)
    assert cal.earliest_fit(8, 3.0, 1.5) == 1.5


def test_job_larger_than_pool_never_fits():
    assert PoolCalendar(4).earliest_fit(5, 1.0, 0.0) is None


def test_fit_waits_for_a_reservation_to_end():
    cal = PoolCalendar(8)
    cal.add(0.0, 2.0, 6)
    assert cal.earliest_fit(2, 5.0, 0.0) == 0.0      # 2 GPUs are free beside the 6
    assert cal.earliest_fit(4, 1.0, 0.5) == 2.0


def test_fit_uses_a_gap_only_when_long_enough():
    cal = PoolCalendar(4)
    cal.add(0.0, 1.0, 4)
    cal.add(2.0, 3.0, 4)
    assert cal.earliest_fit(4, 1.0, 0.0) == 1.0      # the gap [1, 2) is exactly long enough
    assert cal.earliest_fit(4, 1.5, 0.0) == 3.0


def test_release_frees_capacity_and_fits_checks_whole_window():
    cal = PoolCalendar(4)
    cal.add(1.0, 5.0, 3)
    assert not cal.fits(0.0, 2.0, 2)
    cal.add(1.0, 5.0, -3)
    assert cal.fits(0.0, 2.0, 4)
    assert cal.used_at(3.0) == 0


def test_prune_keeps_the_present_and_future():
    cal = PoolCalendar(4)
    cal.add(0.0, 1.0, 1)
    cal.add(2.0, 6.0, 3)
    cal.prune(3.0)
    assert cal.used_at(3.0) == 3
    assert cal.earliest_fit(2, 1.0, 3.0) == 6.0
    assert cal.times == [float("-inf"), 6.0]


def test_fits_each_and_free_starts_agree_with_fits_start_by_start():
    import numpy as np

    cal = PoolCalendar(8)
    cal.add(1.0, 3.5, 6)
    cal.add(3.5, 4.0, 8)
    cal.add(6.25, 9.0, 3)
    cal.add(12.0, 13.0, 7)
    starts = np.arange(0.0, 16.0, 0.25)
    for gpus in (1, 2, 5, 8, 9):
        for duration in (0.5, 1.0, 2.75, 6.0):
            want = [cal.fits(s, s + duration, gpus) for s in starts.tolist()]
            assert cal.fits_each(starts, duration, gpus).tolist() == want
            free = [s for s, ok in zip(starts.tolist(), want, strict=True) if ok]
            assert cal.free_starts(starts, duration, gpus).tolist() == free
    free = PoolCalendar(4)
    assert free.free_starts(starts, 3.0, 4) is starts            # nothing in the way: the same array
