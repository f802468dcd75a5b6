"""The grading pool's bounds: CPU time per item (verdicts independent of load), a wall-clock backstop, a memory
cap per worker, and golds judged first (a bad gold is `gold_invalid`, never `timeout`, never charged to a model).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quagmire.data.filters import gold_drops
from quagmire.verify_pool import (
    CORRECT,
    GOLD_INVALID,
    GOLD_TIMEOUT,
    GOLD_UNPARSEABLE,
    INCORRECT,
    TIMEOUT,
    GradingPool,
    _cpu_clock,
    _WorkQueue,
    grade_one,
)

TOWER = r"\boxed{9^{9^{9^{9}}}}"  # parses instantly; sympy then never finishes comparing it with 5
BASEL = (r"\frac{\pi^2}{6}", r"\boxed{\sum_{n=1}^{\infty} \frac{1}{n^2}}")  # ~0.8-1.5 CPU seconds, correct

# Slow but finite: each costs about 0.2-1.5 s of sympy CPU time on its own (a fresh worker, cold sympy caches).
SLOW_PAIRS: list[tuple[str, str]] = [
    BASEL,
    (r"\frac{\pi^4}{90}", r"\boxed{\sum_{n=1}^{\infty} \frac{1}{n^4}}"),
    (r"\frac{\pi^6}{945}", r"\boxed{\sum_{n=1}^{\infty} \frac{1}{n^6}}"),
    (r"\ln 2", r"\boxed{\sum_{n=1}^{\infty} \frac{(-1)^{n+1}}{n}}"),
    (r"\frac{\pi}{4}", r"\boxed{\sum_{n=0}^{\infty} \frac{(-1)^n}{2n+1}}"),
    (r"\frac{\pi^2}{7}", r"\boxed{\sum_{n=1}^{\infty} \frac{1}{n^2}}"),
    (r"\frac{\pi^4}{91}", r"\boxed{\sum_{n=1}^{\infty} \frac{1}{n^4}}"),
    ("2", r"\boxed{\sum_{n=0}^{\infty} \frac{1}{2^n}}"),
]


@pytest.fixture(scope="module")
def pool() -> Iterator[GradingPool]:
    with GradingPool(workers=2, timeout_s=2.0) as shared:
        shared.grade([("1", r"\boxed{1}")])  # wait until a worker is up
        yield shared


def busy_loops(n: int) -> list[subprocess.Popen]:
    """`n` processes that spin forever, loading the cores (the caller kills them)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


# --------------------------------------------------------------------------- CPU time, not wall time


@pytest.mark.skipif(_cpu_clock(os.getpid()) is None, reason="needs a per-process CPU clock (Linux)")
def test_the_cpu_clock_reads_a_busy_process_and_not_an_idle_one() -> None:
    spinner = busy_loops(1)[0]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        spin_clock, sleep_clock = _cpu_clock(spinner.pid), _cpu_clock(sleeper.pid)
        assert spin_clock is not None and sleep_clock is not None
        time.sleep(1.0)
        spin_cpu, sleep_cpu = spin_clock(), sleep_clock()
        assert spin_cpu is not None and spin_cpu > 0.2  # it ran (even on a loaded machine)
        assert sleep_cpu is not None and sleep_cpu < 0.2  # interpreter start only; sleeping costs no CPU
    finally:
        for process in (spinner, sleeper):
            process.kill()
            process.wait()


def test_an_item_over_its_cpu_budget_times_out_long_before_the_backstop() -> None:
    with GradingPool(workers=1, timeout_s=0.3) as tight:
        tight.grade([("1", r"\boxed{1}")])
        start = time.monotonic()
        verdicts = tight.grade([BASEL, ("7", r"\boxed{7}")])
        elapsed = time.monotonic() - start
        stats = tight.last_stats
    assert [v.status for v in verdicts] == [TIMEOUT, CORRECT]  # the Basel sum needs more than 0.3 CPU seconds
    assert stats.n_timeouts == 1 and stats.n_backstops == 0  # its CPU budget ended it, not the wall clock
    assert elapsed < tight.backstop_s / 2


def test_the_basel_sum_fits_the_default_budget(pool: GradingPool) -> None:
    """A legitimate answer (the sum of 1/n^2 against pi^2/6) costs ~1-1.5 CPU seconds, well within 5 s."""
    start = time.process_time()
    assert grade_one(*BASEL).status == CORRECT
    assert time.process_time() - start < 5.0 / 2
    assert pool.grade([BASEL])[0].status == CORRECT  # and within this pool's 2 s budget


@pytest.mark.slow  # waits out a wall-clock backstop, ~3 s
def test_a_worker_that_burns_no_cpu_is_ended_by_the_wall_clock_backstop() -> None:
    """A stopped worker never spends its CPU budget: the backstop ends its item, counted apart."""
    with GradingPool(workers=1, timeout_s=1.0, backstop_s=2.0) as stalled:
        stalled.grade([("1", r"\boxed{1}")])
        os.kill(stalled.worker_pids[0], signal.SIGSTOP)
        start = time.monotonic()
        (verdict,) = stalled.grade([("4", r"\boxed{4}")])
        elapsed = time.monotonic() - start
        stats = stalled.last_stats
        assert stalled.grade([("4", r"\boxed{4}")])[0].status == CORRECT  # the replacement grades normally
    # The first item the stopped worker held was the gold's check: the gold is `gold_invalid`, not a timeout.
    assert verdict.status == GOLD_INVALID and verdict.reason == GOLD_TIMEOUT
    assert stats.n_backstops == 1 and stats.n_gold_timeouts == 1
    assert 2.0 <= elapsed < 2.0 + 30.0


@pytest.mark.slow  # ~30 s: the slow answers are graded twice, once with every core busy
def test_verdicts_are_identical_on_an_idle_and_a_loaded_machine() -> None:
    """A CPU budget between the answers' cost and a few times it: no answer times out, loaded or not.

    With a wall-clock limit, the same budget turned several of these into timeouts while the cores were busy.
    """
    pairs = SLOW_PAIRS * 2  # distinct keys are graded once per call: repeat through a second pool instead
    verdicts = []
    for load in (0, 3):
        spinners = busy_loops(load)
        try:
            with GradingPool(workers=2, timeout_s=4.0) as fresh:
                fresh.grade([("1", r"\boxed{1}")])
                verdicts.append(fresh.grade(pairs))
                assert fresh.last_stats.n_timeouts == 0
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
    idle, loaded = verdicts
    assert [v.status for v in idle] == [v.status for v in loaded]
    assert idle == loaded
    assert [v.status for v in idle[:2]] == [CORRECT, CORRECT]
    assert idle[5].status == INCORRECT


# --------------------------------------------------------------------------- memory


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads process limits from /proc")
def test_each_worker_has_a_capped_address_space() -> None:
    with GradingPool(workers=1, timeout_s=2.0, memory_limit_bytes=1 << 30) as capped:
        capped.grade([("1", r"\boxed{1}")])
        limits = Path(f"/proc/{capped.worker_pids[0]}/limits").read_text()
    line = next(row for row in limits.splitlines() if row.startswith("Max address space"))
    assert line.split()[3] == str(1 << 30)


@pytest.mark.slow  # a few CPU seconds: a 256 MB integer is built until the memory cap refuses it
def test_an_answer_past_the_memory_cap_ends_as_a_verdict_and_the_pool_keeps_grading() -> None:
    with GradingPool(workers=1, timeout_s=10.0, memory_limit_bytes=300 << 20) as capped:
        capped.grade([("1", r"\boxed{1}")])
        verdicts = capped.grade([("5", r"\boxed{2^{2^{31}}}"), ("5", r"\boxed{5}")])
    assert verdicts[0].status in (INCORRECT, TIMEOUT) and not verdicts[0].correct
    assert verdicts[1].status == CORRECT


# --------------------------------------------------------------------------- golds first


def test_a_gold_that_does_not_parse_is_gold_invalid_for_every_pair_and_named_once(
    pool: GradingPool, caplog: pytest.LogCaptureFixture
) -> None:
    pairs = [("", r"\boxed{5}"), ("", "no idea"), ("3", r"\boxed{3}"), ("", r"\boxed{7}")]
    with caplog.at_level(logging.WARNING, logger="quagmire.verify_pool"):
        verdicts = pool.grade(pairs)
    assert [v.status for v in verdicts] == [GOLD_INVALID, GOLD_INVALID, CORRECT, GOLD_INVALID]
    assert [v.reason for v in verdicts] == [GOLD_UNPARSEABLE, GOLD_UNPARSEABLE, None, GOLD_UNPARSEABLE]
    assert verdicts[0].extracted == "5"  # the answer is still reported, only not scored
    stats = pool.last_stats
    assert (stats.n_golds, stats.n_gold_invalid, stats.n_gold_timeouts, stats.n_keys) == (2, 1, 0, 1)
    named = [r.getMessage() for r in caplog.records if "gold_invalid" in r.getMessage()]
    assert len(named) <= 1  # once per pool: an earlier test may already have named this gold
    assert all("cannot parse the gold" in message for message in named)


# A valid gold (a set of 3000 integers) whose parse alone costs ~1.4 CPU seconds. (A sum of 10,000 ones is no good:
# math-verify gives up on it and returns only its fallback string, which makes it gold_invalid at once.)
LONG_GOLD = ",".join(str(i) for i in range(3000))


def test_a_gold_that_runs_out_of_time_is_gold_invalid_never_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """Every sample of a problem whose gold cannot be parsed in time is excluded, not scored as the model's
    timeout, and its answers are never graded; the log names the gold once."""
    with GradingPool(workers=2, timeout_s=0.2) as tight:  # 7x under its cost: a faster CPU cannot make it fit
        with caplog.at_level(logging.WARNING, logger="quagmire.verify_pool"):
            verdicts = tight.grade([(LONG_GOLD, r"\boxed{10000}"), (LONG_GOLD, r"\boxed{2}"), ("4", r"\boxed{4}")])
            stats = tight.last_stats
            again = tight.grade([(LONG_GOLD, r"\boxed{10000}")])  # remembered: not parsed, not logged again
    assert [v.status for v in verdicts] == [GOLD_INVALID, GOLD_INVALID, CORRECT]
    assert [v.reason for v in verdicts] == [GOLD_TIMEOUT, GOLD_TIMEOUT, None]
    assert not any(v.correct for v in verdicts[:2])
    assert (stats.n_golds, stats.n_gold_timeouts, stats.n_gold_invalid, stats.n_keys, stats.n_timeouts) == (
        2, 1, 0, 1, 0)
    assert again[0].reason == GOLD_TIMEOUT
    named = [r.getMessage() for r in caplog.records if "gold_invalid" in r.getMessage()]
    assert len(named) == 1 and "did not parse within 0.2 CPU seconds" in named[0]
    assert len(named[0]) < 200  # the gold is cut short in the log


def test_the_same_gold_is_valid_with_a_budget_that_fits_it() -> None:
    with GradingPool(workers=1, timeout_s=10.0) as roomy:  # 7x over its cost: a slower CPU still fits it
        assert roomy.grade([(LONG_GOLD, r"\boxed{10000}")])[0].status in (CORRECT, INCORRECT)  # graded, not excluded


def test_the_filters_tell_a_gold_timeout_from_an_unparseable_gold() -> None:
    """data.filters.gold_drops reads `Verdict.reason`: the two reasons stay distinct in the drop table."""

    class FakePool:
        timeout_s = 5.0

        def grade(self, pairs: list[tuple[str, str]]) -> list:
            from quagmire.verify_pool import Verdict

            reasons = {"a": GOLD_UNPARSEABLE, "b": GOLD_TIMEOUT}
            return [
                Verdict(None, GOLD_INVALID, False, reason=reasons[gold]) if gold in reasons
                else Verdict(None, "no_answer", False)
                for gold, _ in pairs
            ]

    drops = gold_drops(["a", "b", "7"], FakePool())  # type: ignore[arg-type]
    assert drops == [("gold_unparseable", None), ("gold_timeout", "no parse within 5 s"), None]


def test_a_pair_is_not_charged_for_parsing_a_gold_its_worker_had_not_seen(pool: GradingPool) -> None:
    """Golds are checked in one round, pairs in the next, maybe by another worker: the answer's verdict must not
    depend on which worker drew it, so a gold parsed again in the pair's worker is not counted in its budget."""
    golds = [rf"\frac{{{i}}}{{{i + 1}}}" for i in range(40)]
    verdicts = pool.grade([(gold, rf"\boxed{{{i}/{i + 1}}}") for i, gold in enumerate(golds)])
    assert all(v.status == CORRECT for v in verdicts)
    assert pool.last_stats.n_golds == 40 and pool.last_stats.n_timeouts == 0


# --------------------------------------------------------------------------- which worker gets which item


def test_a_golds_pairs_go_to_the_worker_that_parsed_it_and_idle_workers_help_last() -> None:
    """The work queue's dispatch rules, without processes: own golds first, then unclaimed ones (claimed on
    the way), then the tail of the largest group rather than idling; a dead worker's items come back first."""
    a, b = object(), object()  # stand-ins for two workers: the queue only compares identities
    items = [("g1", "x"), ("g1", "y"), ("g2", "x"), ("g3", "x"), ("g3", "y"), ("g3", "z"), ("g1", "z")]
    owners: dict = {"g3": b}  # b parsed g3 in the golds round
    queue = _WorkQueue(items, owners)  # type: ignore[arg-type]
    assert len(queue) == 7
    assert queue.take(a, 2) == [0, 1]  # a owns nothing yet: the first unclaimed gold, g1, now a's
    assert owners["g1"] is a
    assert queue.take(b, 2) == [3, 4]  # b's own g3 first
    assert queue.take(a, 3) == [6, 2]  # the rest of a's g1, then the unclaimed g2
    assert queue.take(a, 3) == [5]  # nothing of a's or unclaimed left: it helps b from the tail of g3
    assert len(queue) == 0 and queue.take(b, 3) == []
    queue.put_back([4, 5])  # b died holding these
    assert len(queue) == 2 and queue.take(a, 5) == [4, 5]
