"""Grading: math-verify with gold first, statuses, a hard timeout per item, dedup, and the GRPO reward."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from quagmire.answers import _closing_brace_loop, _closing_brace_vectorized, extract_boxed
from quagmire.errors import QuagmireError
from quagmire.eval.grading import grade_samples
from quagmire.train.rewards import make_correctness_reward
from quagmire.verify_pool import (
    CORRECT,
    GOLD_INVALID,
    INCORRECT,
    NO_ANSWER,
    STATUSES,
    TIMEOUT,
    GradingPool,
    Verdict,
    grade_one,
)

TIMEOUT_S = 2.0
TOWER = r"\boxed{9^{9^{9^{9}}}}"  # parses instantly; sympy then never finishes comparing it with 5


@pytest.fixture(scope="module")
def pool() -> Iterator[GradingPool]:
    with GradingPool(workers=2, timeout_s=TIMEOUT_S) as shared:
        shared.grade([("1", r"\boxed{1}")])  # wait until a worker is up
        yield shared


def stopped_by_its_budget(pool: GradingPool, elapsed: float) -> bool:
    """The call ended through the per-item CPU budget, never the wall-clock backstop: no hang, whatever the load
    (wall time itself is not asserted: a CPU budget takes longer in wall terms on a busy machine)."""
    return pool.last_stats.n_backstops == 0 and elapsed < pool.backstop_s


def timed_grade(pool: GradingPool, pairs: list[tuple[str, str]]) -> tuple[list[Verdict], float]:
    """Grade after making sure a worker is ready, so the time measured is grading time alone."""
    pool.grade([("1", r"\boxed{1}")])
    start = time.monotonic()
    verdicts = pool.grade(pairs)
    return verdicts, time.monotonic() - start


# --------------------------------------------------------------------------- extraction


def test_the_last_boxed_answer_is_extracted_with_nested_braces():
    assert extract_boxed(r"first \boxed{3}, finally \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{a} then \fbox {b}") == "b"
    assert extract_boxed(r"\boxed{ \{1, 2\} }") == r"\{1, 2\}"  # escaped braces do not close the box
    assert extract_boxed(r"\boxed{x} and \boxed 5") == "x"  # a box without braces is skipped
    assert extract_boxed("no box here") is None
    assert extract_boxed(r"\boxed{1} and a cut-off \boxed{2 + {3") is None  # the last box never closes


def test_boxed_extraction_is_fast_on_a_megabyte():
    texts = [
        "word " * 200_000 + r"\boxed{42}",
        r"\boxed{" + "{" * 1_000_000,
        r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}" + " tail" * 200_000,
        r"\boxed{7} " + r"\boxed x " * 100_000,  # many boxes without braces: still one pass
    ]
    start = time.monotonic()
    results = [extract_boxed(text) for text in texts]
    assert time.monotonic() - start < 1.5
    assert results[0] == "42"
    assert results[1] is None
    assert results[2] == "{" * 10_000 + "1" + "}" * 10_000
    assert results[3] == "7"


def test_both_brace_matchers_agree_on_random_text():
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice("{}\\ab") for _ in range(rng.randint(0, 40)))
        begin = rng.randint(0, len(text))
        assert _closing_brace_loop(text, begin) == _closing_brace_vectorized(text, begin), (text, begin)


# --------------------------------------------------------------------------- grade_one


@pytest.mark.parametrize(
    ("gold", "completion"),
    [
        (r"\frac{1}{2}", r"so the answer is \boxed{0.5}"),
        ("0.5", r"\boxed{\frac{1}{2}}"),
        ("122", r"9+3=12,5+6+1=12 \boxed{122}"),
        (r"\boxed{122}", "The answer is 122"),
        ("122", "122"),
        (r"$\sqrt{2}$", r"\boxed{2^{1/2}}"),
    ],
)
def test_equivalent_forms_are_correct(gold: str, completion: str):
    verdict = grade_one(gold, completion)
    assert verdict.status == CORRECT
    assert verdict.correct


def test_a_wrong_answer_is_incorrect_and_keeps_its_text():
    assert grade_one("122", r"\boxed{121}") == Verdict(extracted="121", status=INCORRECT, correct=False)


def test_the_final_chain_of_boxes_is_graded_as_math_verify_reads_it():
    # boxes close together are read together (math-verify): a hedge is wrong, whichever box holds the gold
    assert grade_one("5", r"maybe \boxed{3}? no: \boxed{5}") == Verdict("3,5", INCORRECT, False)
    assert not grade_one("3", r"maybe \boxed{3}? no: \boxed{5}").correct
    assert grade_one("1,-2", r"\boxed{-2} and \boxed{1}") == Verdict("-2,1", CORRECT, True)
    # a box far before the last one is an earlier attempt: only the last is graded
    attempt = r"first \boxed{3}. " + "Then we check the constraint again. " * 3 + r"So \boxed{5}."
    assert grade_one("5", attempt).correct
    assert not grade_one("3", attempt).correct


def test_a_completion_without_an_answer_is_no_answer():
    assert grade_one("5", "I am not sure how to proceed.") == Verdict(None, NO_ANSWER, False)
    assert grade_one("5", r"\boxed{}") == Verdict(None, NO_ANSWER, False)


def test_unparseable_gold_is_excluded_not_scored():
    for gold in ("", r"\boxed{}", "   "):
        verdict = grade_one(gold, r"\boxed{5}")
        assert verdict.status == GOLD_INVALID
        assert not verdict.correct


def test_the_gold_is_passed_first():
    # math-verify compares an interval with a relation only when the *prediction* is the interval
    assert grade_one("1<x<2", r"\boxed{(1,2)}").correct
    assert not grade_one("(1,2)", r"\boxed{1<x<2}").correct


# --------------------------------------------------------------------------- the pool


def test_the_pool_agrees_with_in_process_grading(pool: GradingPool):
    pairs = [("122", r"\boxed{122}"), ("122", r"\boxed{121}"), ("5", "no idea"), ("", r"\boxed{5}")]
    assert pool.grade(pairs) == [grade_one(gold, completion) for gold, completion in pairs]
    assert [v.status for v in pool.grade(pairs)] == [CORRECT, INCORRECT, NO_ANSWER, GOLD_INVALID]


@pytest.mark.parametrize(
    "completion",
    [
        pytest.param(TOWER, id="power-tower"),
        pytest.param("x" * (1 << 20), id="megabyte"),
        pytest.param("1 + " * 50_000, id="long-sum"),
        pytest.param(r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", id="10k-nested-braces"),
    ],
)
def test_hostile_outputs_return_within_the_timeout(pool: GradingPool, completion: str):
    (verdict,), elapsed = timed_grade(pool, [("5", completion)])
    assert stopped_by_its_budget(pool, elapsed)
    assert verdict.status in STATUSES
    assert not verdict.correct


def test_model_text_that_reads_like_code_is_never_executed(pool: GradingPool, tmp_path: Path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    completions = [
        rf"\boxed{{{payload}}}",
        f"${payload}$",
        f"The final answer is {payload}",
        payload,
        f'exec("{payload}")',
        rf"\boxed{{\text{{{payload}}}}}",
    ]
    verdicts, elapsed = timed_grade(pool, [("5", c) for c in completions])
    assert stopped_by_its_budget(pool, elapsed)
    assert not any(v.correct for v in verdicts)
    assert not marker.exists()
    assert not grade_one("5", completions[0]).correct and not marker.exists()


def test_a_hung_item_times_out_alone_and_the_pool_keeps_grading(pool: GradingPool):
    pairs = [("7", rf"\boxed{{{i}}}") for i in range(20)]
    pairs[3] = ("5", TOWER)  # mid-batch: the items queued behind it must be re-dispatched, not lost
    verdicts, elapsed = timed_grade(pool, pairs)
    assert stopped_by_its_budget(pool, elapsed)
    assert verdicts[3] == Verdict(extracted="9^{9^{9^{9}}}", status=TIMEOUT, correct=False)
    expected = [INCORRECT] * 20
    expected[3], expected[7] = TIMEOUT, CORRECT
    assert [v.status for v in verdicts] == expected
    assert pool.last_stats.n_timeouts == 1
    assert pool.last_stats.n_restarts == 1
    assert [v.status for v in pool.grade([("2", r"\boxed{2}"), ("2", r"\boxed{3}")])] == [CORRECT, INCORRECT]


def test_a_killed_worker_is_replaced_without_losing_items(pool: GradingPool):
    os.kill(pool.worker_pids[0], signal.SIGKILL)
    verdicts = pool.grade([(str(i), rf"\boxed{{{i}}}") for i in range(10)])
    assert all(v.correct for v in verdicts)
    assert pool.last_stats.n_timeouts == 0


def test_a_worker_killed_before_it_is_ready_is_replaced() -> None:
    """A worker that dies while starting (killed from outside) holds no item: it is restarted, nothing is lost."""
    with GradingPool(workers=1, timeout_s=TIMEOUT_S) as fresh:
        os.kill(fresh.worker_pids[0], signal.SIGKILL)  # it is still importing math-verify
        verdicts = fresh.grade([(str(i), rf"\boxed{{{i}}}") for i in range(5)])
    assert all(v.correct for v in verdicts)


BROKEN_ENV_SCRIPT = """
from quagmire.errors import QuagmireError
from quagmire.verify_pool import GradingPool
if __name__ == "__main__":
    try:
        with GradingPool(workers=1, timeout_s=2.0) as pool:
            pool.grade([("1", "1")])
    except QuagmireError as exc:
        print("ERROR", exc)
"""


def test_workers_that_can_never_start_fail_the_call_with_a_clear_error(tmp_path: Path) -> None:
    """A math-verify that cannot be imported kills every worker at start: the call fails after a few restarts."""
    fake = tmp_path / "math_verify"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('math-verify is broken here')\n")
    (tmp_path / "broken.py").write_text(BROKEN_ENV_SCRIPT)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{src}"}
    result = subprocess.run([sys.executable, str(tmp_path / "broken.py")], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert "ERROR grading workers died while starting, 3 times (is math-verify installed?)" in result.stdout, (
        result.stdout + result.stderr[-2000:])


ORPHAN_SCRIPT = """
import sys
from quagmire.verify_pool import GradingPool
if __name__ == "__main__":
    pool = GradingPool(workers=1, timeout_s=1.0)
    pool.grade([("1", "1")])
    print(pool.worker_pids[0], flush=True)
    pool.grade([("5", sys.argv[1])])
"""


def process_is_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaps counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.slow  # a separate Python process is started, SIGKILLed, and its orphaned worker watched until gone
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_hung_worker_never_outlives_a_killed_parent(tmp_path: Path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, str(script), TOWER]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as parent:
        try:
            assert parent.stdout is not None
            worker_pid = int(parent.stdout.readline())
            time.sleep(0.3)  # the worker is now inside the endless comparison
        finally:
            parent.kill()  # SIGKILL: no cleanup code runs in the parent
    deadline = time.monotonic() + 20.0
    while not process_is_gone(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not process_is_gone(worker_pid):
        os.kill(worker_pid, signal.SIGKILL)
        pytest.fail("an orphaned grading worker kept running after its parent was killed")


def test_identical_answers_are_graded_once(pool: GradingPool):
    pairs = []
    for i in range(300):
        pairs.append(("4", rf"step {i}: 2+2 is \boxed{{4}}"))  # same key: only the boxed answer is sent
        pairs.append(("4", r"\boxed{5}"))
        pairs.append(("9", r"\boxed{4}"))
    verdicts = pool.grade(pairs)
    assert pool.last_stats.n_pairs == 900
    assert pool.last_stats.n_keys == 3
    assert [v.status for v in verdicts[:3]] * 300 == [v.status for v in verdicts]
    assert [v.correct for v in verdicts[:3]] == [True, False, False]


def test_a_closed_pool_refuses_work():
    closed = GradingPool(workers=1, timeout_s=TIMEOUT_S)
    closed.close()
    closed.close()
    with pytest.raises(QuagmireError, match="closed"):
        closed.grade([("1", "1")])


# --------------------------------------------------------------------------- tables and rewards


def test_grade_samples_gives_one_row_per_sample_in_the_grades_schema(pool: GradingPool):
    problems = pd.DataFrame({"problem_id": ["a", "b", "c"], "answer": ["122", r"\frac{1}{2}", ""]})
    samples = pd.DataFrame(
        {
            "problem_id": ["b", "a", "a", "c"],
            "sample_idx": [0, 0, 1, 0],
            "completion": [r"\boxed{0.5}", r"\boxed{122}", "no idea", r"\boxed{1}"],
        }
    )
    grades = grade_samples(samples, problems, pool=pool)
    assert list(grades.columns) == ["problem_id", "sample_idx", "extracted", "status", "correct"]
    assert grades["problem_id"].tolist() == ["b", "a", "a", "c"]
    assert grades["sample_idx"].tolist() == [0, 0, 1, 0]
    assert grades["extracted"].tolist() == ["0.5", "122", None, "1"]
    assert grades["status"].tolist() == [CORRECT, CORRECT, NO_ANSWER, GOLD_INVALID]
    assert grades["correct"].dtype == bool
    assert grades["correct"].tolist() == [True, True, False, False]


def test_a_sample_without_a_gold_answer_is_an_error_naming_it():
    problems = pd.DataFrame({"problem_id": ["a"], "answer": ["1"]})
    samples = pd.DataFrame(
        {"problem_id": ["a", "zz-missing"], "sample_idx": [0, 0], "completion": ["1", "1"]}
    )
    with pytest.raises(QuagmireError, match="zz-missing"):
        grade_samples(samples, problems)


def test_the_reward_is_one_for_correct_zero_otherwise_and_none_for_a_bad_gold(pool: GradingPool):
    reward = make_correctness_reward(pool)
    assert reward.__name__ == "correctness"
    completions = [r"\boxed{122}", r"\boxed{7}", "nothing", r"\boxed{1}"]
    values = reward(["p"] * 4, completions, answer=["122", "122", "122", ""], other=[0, 0, 0, 0])
    assert values == [1.0, 0.0, 0.0, None]
    conversational = [[{"role": "assistant", "content": r"\boxed{122}"}]]
    assert reward(["p"], conversational, answer=["122"]) == [1.0]
    with pytest.raises(QuagmireError, match="answer"):
        reward(["p"], [r"\boxed{1}"], solution=["1"])


def test_escaped_dollar_gold_is_a_dollar_amount_not_a_delimiter() -> None:
    # MATH-500 has golds like "\$36": reading "$" as a math delimiter made them gold_invalid (never scored).
    verdict = grade_one(r"\$36", r"The total is \boxed{\$36}.")
    assert verdict.status == "correct"
    assert grade_one(r"\$18.90", r"\boxed{18.90}").correct
