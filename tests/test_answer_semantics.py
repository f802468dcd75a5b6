"""Answer semantics: the text handed to math-verify reads as math-verify's default `parse` of the completion."""

from __future__ import annotations

import logging
import random
import re
import time

import pytest

from quagmire.answers import answer_text, final_boxes
from quagmire.verify_pool import GOLD_INVALID, _gold_is_nonsense, grade_one

# math-verify's plain box pattern, as in its parser (DOTALL: from the first `\boxed{` to the last `}`)
_PLAIN_BOX = re.compile(r"\\boxed{.+}", re.DOTALL)
_ATOMS = [r"\boxed{", r"\fbox{", r"\boxed ", "{", "}", "}", "a", "1", " and ", " or ", ", ", ";", "x" * 12, "y" * 40,
          " ", "\\{", "\\}", "\n"]


def test_the_chain_of_boxes_is_math_verifys_own_on_random_text():
    from latex2sympy2_extended.math_normalization import extract_boxed_content

    rng = random.Random(0)
    for _ in range(30_000):
        text = "".join(rng.choice(_ATOMS) for _ in range(rng.randint(0, 14)))
        chain = final_boxes(text)
        if chain is None:
            continue  # the whole completion goes to math-verify
        region = _PLAIN_BOX.search(text)
        assert region is not None, text
        assert extract_boxed_content(region.group(), "last") == ",".join(chain), text


@pytest.mark.parametrize(
    "completion",
    [
        r"\boxed{3} or \boxed{5}",
        r"We get $\boxed{-2}$ and $\boxed{1}$.",
        r"first \boxed{2}. " + "Long check of every case. " * 4 + r"so \boxed{7}.",
        r"\boxed{\frac{1}{2}}, i.e. \boxed{0.5}",
        r"\boxed{\boxed{4}}",
        r"$x = \boxed{3}$",
        r"\boxed{5}\boxed{5}",
        r"The answer is \boxed{\{1, 2\}} and that is all.",
    ],
)
def test_the_reduced_text_parses_like_the_whole_completion(completion: str):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    text, shown = answer_text(completion)
    assert text != completion and shown is not None
    reduced, whole = parse(text, parsing_timeout=None), parse(completion, parsing_timeout=None)
    assert verify(reduced, whole, timeout_seconds=None) and verify(whole, reduced, timeout_seconds=None)


def test_the_whole_completion_goes_to_math_verify_where_its_own_reading_decides():
    for completion in [
        "The answer is 5.",  # no box
        r"\boxed{5}. The final answer is 6.",  # a final-answer line after the box
        r"So \boxed{\frac{1}{2",  # the last box never closes
        r"\boxed{}",  # an empty box
        r"\fbox{5}",  # no `\boxed{`: math-verify's box patterns do not fire
    ]:
        assert answer_text(completion) == (completion, None), completion
    assert grade_one("6", r"\boxed{5}. The final answer is 6.").correct  # as math-verify


def test_a_hedge_is_wrong_and_a_multi_answer_in_several_boxes_is_right():
    assert not grade_one("5", r"\boxed{3} or \boxed{5}").correct
    assert not grade_one("5", r"\boxed{5} or \boxed{3}").correct
    assert grade_one("1,-2", r"\boxed{-2} and \boxed{1}").correct
    assert grade_one("2,3,4", r"\boxed{2}, \boxed{3}, \boxed{4}").correct
    assert grade_one("5", r"\boxed{5}, that is \boxed{5}").correct  # one answer boxed twice


def test_the_chain_is_found_in_linear_time_on_hostile_text():
    texts = [
        r"\boxed{" + "{" * 1_000_000,
        r"\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}" + " tail" * 200_000,
        r"\boxed{7} " + r"\boxed x " * 100_000,
        r"\boxed{1}" * 100_000,
        "word " * 200_000 + r"\boxed{42}",
    ]
    start = time.monotonic()
    chains = [final_boxes(text) for text in texts]
    assert time.monotonic() - start < 5.0
    assert chains[0] is None
    assert chains[1] == ["{" * 50_000 + "1" + "}" * 50_000]
    assert chains[2] == ["7"]  # math-verify stops at a box without a brace after a chain was found
    assert chains[3] == ["1"]  # equal neighbours collapse
    assert chains[4] == ["42"]


@pytest.mark.parametrize(
    "gold",
    [r"\frac{1}{2", r"\sqrt{2}}", r"\newcommand{\x}{5}\x", r"\def\x{5}\x", r"\boxed{}", "$221,$8$", "np.arcsin(10/13)"],
)
def test_a_nonsense_gold_is_gold_invalid_never_scored(gold: str):
    verdict = grade_one(gold, r"\boxed{5}")
    assert verdict.status == GOLD_INVALID
    assert not verdict.correct


def test_sane_golds_are_not_called_nonsense():
    for gold in [r"\boxed{\{1,2\}}", r"\boxed{\$18.90}", r"$\frac{1}{2}$", r"\boxed{\text{(C)}}", r"\boxed{\det A}"]:
        assert not _gold_is_nonsense(gold), gold
