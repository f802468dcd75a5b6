"""The grading corpus: (gold, completion, expected verdict) cases a careful human grader agrees with.

`tests/grading_corpus.jsonl` holds one case per line: id, category, gold, completion, expected (a status), reason,
and optionally `known_limitation` (why math-verify itself is wrong there) with `limitation_status` (the status
the grader gives instead; asserted, so the mark cannot go stale) and `hostile` (kept away from plain, unbounded
math-verify). Every case goes through one `GradingPool`, the path of evaluation and of the GRPO reward.

`python tests/test_grading_corpus.py` prints the agreement rates quoted in README.md (section Grading).
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from quagmire import answers
from quagmire.train.rewards import make_correctness_reward
from quagmire.verify_pool import CORRECT, GOLD_INVALID, STATUSES, GradingPool, Verdict

CORPUS = Path(__file__).with_name("grading_corpus.jsonl")
CATEGORIES = {  # issue 10's list, plus what the benchmarks and the answer semantics add
    "integer", "thousands_separator", "decimal", "fraction", "root", "pi", "percentage", "degrees", "units_text",
    "interval", "set_tuple", "multiple_answers", "equation", "matrix", "time_of_day", "negative",
    "scientific_notation", "hedged", "no_box", "truncated", "gold_invalid", "box_chain", "gsm8k", "hostile",
}


@lru_cache(maxsize=1)
def corpus() -> tuple[dict[str, Any], ...]:
    """The corpus cases, in file order."""
    with CORPUS.open(encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


def graded(pool: GradingPool) -> list[Verdict]:
    """Every case graded in one call of the pool."""
    return pool.grade([(case["gold"], case["completion"]) for case in corpus()])


def agrees(case: dict[str, Any], status: str) -> bool:
    """Whether a status is the verdict the human grader expects for `case`."""
    return status == case["expected"]


def plain_math_verify(case: dict[str, Any]) -> str:
    """The status plain `verify(parse(gold), parse(completion))` gives, in process and without a time limit."""
    from math_verify import parse, verify

    gold = parse(answers.as_text(case["gold"]), parsing_timeout=None)  # type: ignore[arg-type]
    if not gold:
        return GOLD_INVALID
    answer = parse(case["completion"], parsing_timeout=None)  # type: ignore[arg-type]
    if not answer:
        return "no_answer"
    return CORRECT if verify(gold, answer, timeout_seconds=None) else "incorrect"


def plain_agrees(case: dict[str, Any], status: str) -> bool:
    """Agreement of plain math-verify, which has no gold_invalid/no_answer distinction beyond empty parses."""
    if case["expected"] in (CORRECT, GOLD_INVALID):
        return status == case["expected"]
    return status in ("incorrect", "no_answer")  # wrong either way: plain math-verify has no finer status


def agreement_rates(pool: GradingPool) -> dict[str, Any]:
    """Corpus size and the shares of cases where our grader / plain math-verify match the expected verdict."""
    cases = corpus()
    ours = [agrees(case, v.status) for case, v in zip(cases, graded(pool), strict=True)]
    plain_cases = [case for case in cases if not case.get("hostile")]
    plain = [plain_agrees(case, plain_math_verify(case)) for case in plain_cases]
    return {
        "cases": len(cases),
        "known_limitations": sum(1 for case in cases if case.get("known_limitation")),
        "ours": sum(ours) / len(ours),
        "plain_cases": len(plain_cases),
        "plain_math_verify": sum(plain) / len(plain),
    }


@pytest.fixture(scope="module")
def pool() -> Iterator[GradingPool]:
    with GradingPool(workers=2, timeout_s=10.0) as shared:
        yield shared


@pytest.fixture(scope="module")
def verdicts(pool: GradingPool) -> list[Verdict]:
    return graded(pool)


def test_the_corpus_is_large_well_formed_and_covers_every_category():
    cases = corpus()
    assert len(cases) >= 250
    assert len({case["id"] for case in cases}) == len(cases)
    for case in cases:
        assert case["expected"] in STATUSES, case["id"]
        assert case["reason"].strip(), case["id"]
        assert case["category"] in CATEGORIES, case["id"]
        if case.get("known_limitation"):
            assert case["limitation_status"] in STATUSES and case["limitation_status"] != case["expected"], case["id"]
    assert {case["category"] for case in cases} == CATEGORIES


def test_the_grader_gives_the_expected_verdict_or_the_documented_limitation(verdicts: list[Verdict]):
    wrong = []
    for case, verdict in zip(corpus(), verdicts, strict=True):
        wanted = case["limitation_status"] if case.get("known_limitation") else case["expected"]
        if verdict.status != wanted:
            wrong.append(f"{case['id']}: got {verdict.status}, want {wanted} ({case['reason']})")
    assert not wrong, "\n".join(wrong)


def test_the_reward_and_the_grade_of_a_case_agree(pool: GradingPool, verdicts: list[Verdict]):
    reward = make_correctness_reward(pool)
    cases = corpus()
    rewards = reward(
        ["p"] * len(cases),
        [[{"role": "assistant", "content": case["completion"]}] for case in cases],
        answer=[case["gold"] for case in cases],
    )
    expected = [None if v.status == GOLD_INVALID else float(v.status == CORRECT) for v in verdicts]
    assert rewards == expected


def test_the_prepared_answer_text_grades_like_the_whole_completion():
    """Where `answer_text` reduces a completion to its boxes, math-verify reads the same from both.

    Cases where the reduction deviates on purpose (an unparseable box, a box inside an environment that
    math-verify reads differently) are marked `deviation` in the corpus.
    """
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    differ = []
    for case in corpus():
        if case.get("hostile"):
            continue
        text, _ = answers.answer_text(case["completion"])
        if text == case["completion"]:
            continue  # the whole completion goes to math-verify: nothing to compare
        gold = parse(answers.gold_text(case["gold"]), parsing_timeout=None)  # type: ignore[arg-type]
        if not gold:
            continue
        reduced = verify(gold, parse(text, parsing_timeout=None), timeout_seconds=None)  # type: ignore[arg-type]
        whole = verify(gold, parse(case["completion"], parsing_timeout=None), timeout_seconds=None)  # type: ignore[arg-type]
        if reduced != whole and not case.get("deviation"):
            differ.append(f"{case['id']}: reduced {reduced}, whole completion {whole}")
        if reduced == whole and case.get("deviation"):
            differ.append(f"{case['id']}: marked as a deviation but reads the same")
    assert not differ, "\n".join(differ)


def test_plain_math_verify_agreement_is_measured(pool: GradingPool):
    rates = agreement_rates(pool)
    print(f"\ncorpus agreement: {rates}")
    assert rates["ours"] >= rates["plain_math_verify"]
    statuses = Counter(case["expected"] for case in corpus())
    assert statuses[CORRECT] and statuses["incorrect"] and statuses["no_answer"] and statuses[GOLD_INVALID]


def main() -> None:
    """Print the corpus size and the agreement rates (for README.md)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    with GradingPool(workers=2, timeout_s=10.0) as shared:
        rates = agreement_rates(shared)
    print(f"cases: {rates['cases']} ({rates['known_limitations']} known limitations of math-verify)")
    print(f"grader vs expected: {rates['ours']:.1%}")
    print(f"plain math_verify.verify(parse(gold), parse(completion)) vs expected: {rates['plain_math_verify']:.1%}"
          f" on {rates['plain_cases']} non-hostile cases")


if __name__ == "__main__":
    sys.exit(main())
