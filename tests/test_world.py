"""The embedded world: correct problems and worked solutions, a lossless tokenizer, a real Llama model."""

from __future__ import annotations

import math
import random
import re
import statistics

import pytest

from quagmire.config import section_defaults
from quagmire.hf import load_tokenizer
from quagmire.verify_pool import grade_one
from quagmire.world.model import TinyModelSpec, build_model, count_parameters
from quagmire.world.pretrain import (
    PretrainSettings,
    digit_facts,
    direct_problems,
    pretrain,
    pretrain_corpus,
)
from quagmire.world.problems import (
    FAMILIES,
    PRETRAIN_LEVEL,
    STYLES,
    WORDS,
    Problem,
    choose_style,
    sample_problem,
    solution,
    unique_problems,
)
from quagmire.world.tokenizer import CHARACTERS, SPECIAL_TOKENS, build_tokenizer

LEVELS = (1, 2, 3, 4)
PER_KIND = 150
STEP = re.compile(r"(\d+(?:[+*-]\d+)+)=(\d+)")
PYTHON_OP = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}


def _problems(seed: int = 0, per_kind: int = PER_KIND) -> list[Problem]:
    rng = random.Random(seed)
    return [sample_problem(rng, f, level) for f in FAMILIES for level in LEVELS for _ in range(per_kind)]


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return _problems()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


# --- problems -----------------------------------------------------------------------------------------------


def test_answer_is_python_arithmetic_for_every_family_and_level(problems):
    for p in problems:
        assert p.answer == PYTHON_OP[p.family](p.a, p.b), p
        assert p.question == f"{p.a}{ {'add': '+', 'sub': '-', 'mul': '*'}[p.family] }{p.b}="


def test_operands_have_the_level_number_of_digits(problems):
    for p in problems:
        assert len(str(p.a)) == p.level, p
        if p.family == "mul":
            assert 2 <= p.b <= 9, p  # times one digit, never a trivial 0 or 1
        else:
            assert len(str(p.b)) == p.level, p


def test_subtraction_never_goes_negative(problems):
    subs = [p for p in problems if p.family == "sub"]
    assert len(subs) == PER_KIND * len(LEVELS)
    assert all(p.a >= p.b and p.answer >= 0 for p in subs)


def test_unknown_family_and_bad_level_raise():
    with pytest.raises(ValueError, match="div"):
        sample_problem(random.Random(0), "div", 2)
    with pytest.raises(ValueError, match="level"):
        sample_problem(random.Random(0), "add", 0)


def test_same_seed_draws_the_same_problems():
    assert _problems(seed=3, per_kind=5) == _problems(seed=3, per_kind=5)
    assert _problems(seed=3, per_kind=5) != _problems(seed=4, per_kind=5)


# --- solutions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_every_solution_ends_in_the_boxed_answer(problems, style):
    for p in problems:
        text = solution(p, style)
        assert text.endswith(f"\\boxed{{{p.answer}}}"), (p, text)
        assert text.count("\\boxed") == 1


def test_styles_grow_longer_terse_short_long(problems):
    for p in problems:
        assert len(solution(p, "terse")) < len(solution(p, "short")) < len(solution(p, "long")), p


def test_long_style_is_longer_than_short_style_on_average(problems):
    ratios = [len(solution(p, "long")) / len(solution(p, "short")) for p in problems]
    assert statistics.mean(ratios) > 1.2
    assert all(r > 1.0 for r in ratios)


def test_long_style_is_longer_in_tokens_too(problems, tokenizer):
    sample = problems[::10]
    short = sum(len(tokenizer(solution(p, "short"))["input_ids"]) for p in sample)
    long = sum(len(tokenizer(solution(p, "long"))["input_ids"]) for p in sample)
    assert long / short > 1.2


@pytest.mark.parametrize("style", ["short", "long"])
def test_every_column_step_is_true_arithmetic(problems, style):
    for p in problems:
        text = solution(p, style)
        steps = STEP.findall(text)
        assert len(steps) == p.level, (p, text)  # one step per column
        for expr, value in steps:
            assert eval(expr) == int(value), (p, text, expr)  # noqa: S307 - digits and + - * only


def test_columns_follow_the_school_procedure(problems):
    """Each column uses the operands' digits (right to left); its value's last digit is the answer's digit."""
    for p in problems:
        cols = p.columns()
        answer_digits = str(p.answer)[::-1]
        for i, (expr, value) in enumerate(cols):
            assert eval(expr) == value, (p, expr)  # noqa: S307
            if i < len(cols) - 1:
                digit = answer_digits[i] if i < len(answer_digits) else "0"
                assert value % 10 == int(digit), (p, cols)
        if p.family in ("add", "mul"):
            assert cols[-1][1] == p.answer // 10 ** (len(cols) - 1), (p, cols)
        a_digit = str(p.a)[::-1]
        for i, (expr, _) in enumerate(cols):
            if p.family != "sub":  # sub writes the borrowed-into top digit, e.g. '13-8'
                assert expr.startswith(a_digit[i]), (p, expr)


def test_short_style_partials_are_the_answer_digits_so_far(problems):
    for p in problems:
        pieces = solution(p, "short").split(" \\boxed")[0].split(",")
        partials = [piece.rsplit(":", 1)[1] for piece in pieces]
        answer = str(p.answer)
        width = len(pieces)
        for i, partial in enumerate(partials[:-1]):
            assert partial == answer.zfill(width)[-(i + 1) :], (p, partials)
        assert int(partials[-1]) == p.answer


def test_solution_of_an_unknown_style_raises():
    with pytest.raises(ValueError, match="style"):
        solution(Problem("add", 2, 12, 34), "verbose")


def test_known_worked_example():
    p = Problem("add", 2, 59, 63)
    assert p.question == "59+63="
    assert p.columns() == [("9+3", 12), ("5+6+1", 12)]
    assert solution(p, "terse") == "\\boxed{122}"
    assert solution(p, "short") == "9+3=12:2,5+6+1=12:122 \\boxed{122}"
    assert solution(p, "long") == "9+3=12 carry 1 so 2, 5+6+1=12 so 122, answer \\boxed{122}"


def test_long_wording_varies_with_the_rng_but_not_its_arithmetic():
    p = Problem("add", 3, 697, 323)
    texts = {solution(p, "long", random.Random(seed)) for seed in range(40)}
    assert len(texts) > 5  # several wordings of the same steps
    for text in texts:
        assert STEP.findall(text) == STEP.findall(solution(p, "long"))
        assert text.endswith("\\boxed{1020}")
    assert solution(p, "long", random.Random(3)) == solution(p, "long", random.Random(3))


@pytest.mark.parametrize(
    ("problem", "difficulty"),
    [
        (Problem("add", 2, 12, 34), 0),  # no carry
        (Problem("add", 2, 59, 63), 1),  # one carry into the tens (the carry out of the tens adds a digit)
        (Problem("sub", 2, 75, 72), 0),
        (Problem("sub", 2, 63, 59), 1),  # one borrow
        (Problem("mul", 2, 61, 6), 0),
        (Problem("mul", 2, 47, 6), 1),
        (Problem("add", 3, 123, 456), 1),  # a third digit
        (Problem("add", 3, 697, 323), 3),  # two carries and a third digit
        (Problem("add", 4, 9999, 9999), 3),  # capped
    ],
)
def test_difficulty_counts_carries_and_extra_digits(problem, difficulty):
    assert problem.difficulty() == difficulty


def test_harder_problems_get_longer_solutions_in_the_default_world():
    """Length tracks difficulty: the mean solution length rises with difficulty, and the terse style (the
    answer alone) belongs to the easy problems."""
    weights = section_defaults("world")["styles"]
    rng = random.Random(0)
    by_level: dict[int, list[int]] = {}
    styles: dict[int, set[str]] = {}
    for family, level in [("add", 2), ("sub", 2), ("mul", 2), ("add", 3)] * 300:
        p = sample_problem(rng, family, level)
        style = choose_style(p, weights, rng)
        by_level.setdefault(p.difficulty(), []).append(len(solution(p, style, rng)))
        styles.setdefault(p.difficulty(), set()).add(style)
    means = [statistics.mean(by_level[d]) for d in sorted(by_level)]
    assert sorted(by_level) == [0, 1, 2, 3]
    assert means == sorted(means) and means[-1] > 2 * means[0]
    assert "terse" in styles[0] and "terse" not in styles[3]


def test_a_difficulty_without_any_style_weight_is_an_error():
    weights = {"terse": [1, 1, 1, 0], "short": [0, 0, 0, 0], "long": [0, 0, 0, 0]}
    with pytest.raises(ValueError, match="difficulty 3"):
        choose_style(Problem("add", 4, 9999, 9999), weights, random.Random(0))


def test_gold_solution_of_every_family_grades_correct():
    rng = random.Random(7)
    for family in FAMILIES:
        for level in (2, 3, 4):
            p = sample_problem(rng, family, level)
            for style in STYLES:
                verdict = grade_one(str(p.answer), solution(p, style))
                assert verdict.correct, (p, style, verdict)
                assert verdict.status == "correct"
            wrong = solution(Problem(family, level, p.a + 1, p.b), "short")
            assert not grade_one(str(p.answer), wrong).correct


# --- unique problems ----------------------------------------------------------------------------------------


def test_unique_problems_skips_taken_keys_and_records_new_ones():
    rng = random.Random(0)
    taken = {f"{a}+{b}=" for a in range(10) for b in range(10) if (a + b) % 2 == 0}
    before = set(taken)
    drawn = list(unique_problems(rng, [("add", 1)], 50, taken))
    keys = [p.key for p in drawn]
    assert len(keys) == 50 == len(set(keys))
    assert not set(keys) & before
    assert taken == before | set(keys)


def test_unique_problems_cycles_through_the_mix():
    mix = [("add", 2), ("add", 2), ("mul", 3)]
    drawn = list(unique_problems(random.Random(1), mix, 30, set()))
    kinds = [(p.family, p.level) for p in drawn]
    assert kinds.count(("add", 2)) == 20 and kinds.count(("mul", 3)) == 10


def test_unique_problems_raises_when_the_space_is_too_small():
    with pytest.raises(ValueError, match="too small"):
        list(unique_problems(random.Random(0), [("add", 1)], 101, set()))  # only 10 x 10 one-digit sums
    taken: set[str] = set()
    assert len(list(unique_problems(random.Random(0), [("add", 1)], 100, taken))) == 100
    with pytest.raises(ValueError, match="too small"):
        list(unique_problems(random.Random(0), [("add", 1)], 1, taken))


# --- tokenizer ----------------------------------------------------------------------------------------------


def test_every_character_is_one_token_and_round_trips(tokenizer):
    text = "".join(CHARACTERS)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(CHARACTERS)
    assert tokenizer.unk_token_id not in ids
    assert len(set(ids)) == len(CHARACTERS)
    assert tokenizer.decode(ids) == text
    for char in CHARACTERS:
        (single,) = tokenizer(char, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode([single]) == char


def test_worked_solutions_round_trip(tokenizer, problems):
    for i, p in enumerate(problems[::25]):
        text = p.question + solution(p, "long", random.Random(i))
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_the_worlds_words_are_one_token_each_like_bpe(tokenizer):
    for word in WORDS:
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("9+3=12 carrying 1 so 2. Answer: \\boxed{12}")["input_ids"])
    assert tokens == ["<bos>", "9", "+", "3", "=", "1", "2", " carrying", " ", "1", " so", " ", "2", ".", " Answer",
                      ":", " ", "\\boxed{", "1", "2", "}"]
    # any other text still tokenizes, character by character
    assert tokenizer.convert_ids_to_tokens(tokenizer("so carry", add_special_tokens=False)["input_ids"]) == [
        "s", "o", " carry"]


def test_bos_is_prepended(tokenizer):
    ids = tokenizer("12+3=")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.bos_token_id not in ids[1:]
    assert len(ids) == 6


def test_special_token_ids_are_distinct(tokenizer):
    ids = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
    assert None not in ids
    assert len(set(ids)) == 4
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(CHARACTERS) + len(WORDS)


def test_saved_tokenizer_loads_back_identically(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    texts = ["59+63=", "9+3=12 carry 1 so 2, answer \\boxed{122}", "".join(CHARACTERS)]
    for text in texts:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    assert loaded.padding_side == "left"  # generation pads on the left


# --- model --------------------------------------------------------------------------------------------------


def _expected_parameters(spec: TinyModelSpec, vocab: int) -> int:
    """Llama, tied embeddings, no biases: embedding + layers x (4h² attention + 3hi MLP + 2 norms) + norm."""
    h, i = spec.hidden_size, spec.intermediate_size
    return vocab * h + spec.num_hidden_layers * (4 * h * h + 3 * h * i + 2 * h) + h


def test_build_model_is_a_llama_with_the_tokenizers_vocab(tokenizer):
    from transformers import LlamaForCausalLM

    spec = TinyModelSpec(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    model = build_model(spec, tokenizer, seed=0)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape == (len(tokenizer), 16)
    assert model.config.num_hidden_layers == 1
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert count_parameters(model) == _expected_parameters(spec, len(tokenizer))


def test_default_spec_has_about_the_documented_size(tokenizer):
    import torch

    with torch.device("meta"):
        model = build_model(TinyModelSpec(), tokenizer, seed=0)
    n = count_parameters(model)
    assert n == _expected_parameters(TinyModelSpec(), len(tokenizer))
    assert 0.15e6 < n < 0.4e6  # "about 0.23M" in TinyModelSpec's docstring


def test_build_model_is_deterministic_by_seed(tokenizer):
    import torch

    spec = TinyModelSpec(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    a, b, c = (build_model(spec, tokenizer, seed=s) for s in (1, 1, 2))
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_spec_from_config_takes_only_model_keys():
    spec = TinyModelSpec.from_config(
        {"hidden_size": 32, "num_hidden_layers": 2, "source": "embedded", "pretrain": {"steps": 3}}
    )
    assert spec == TinyModelSpec(hidden_size=32, num_hidden_layers=2)


# --- pre-training -------------------------------------------------------------------------------------------


def test_digit_facts_are_all_true_arithmetic():
    facts = digit_facts()
    assert len(facts) == len(set(facts)) > 300
    for fact in facts:
        expr, value = fact.split("=")
        assert eval(expr) == int(value), fact  # noqa: S307
        assert int(value) >= 0


def test_digit_facts_cover_every_column_step_except_mul_carries():
    facts = set(digit_facts())
    for p in _problems(seed=5, per_kind=20):
        for expr, value in p.columns():
            if p.family == "mul" and "+" in expr:
                continue
            assert f"{expr}={value}" in facts, (p, expr)


def test_direct_problems_are_one_digit_and_answered_correctly():
    lines = direct_problems(random.Random(0), 30)
    assert len(lines) == 30
    for line in lines:
        m = re.fullmatch(r"(\d)([+*-])(\d)=\\boxed\{(\d+)\}", line)
        assert m, line
        assert eval(m.group(1) + m.group(2) + m.group(3)) == int(m.group(4))  # noqa: S307
    assert PRETRAIN_LEVEL == 1


def test_pretrain_corpus_never_contains_a_worked_solution():
    corpus = pretrain_corpus(PretrainSettings(direct_problems=40))
    assert len(corpus) == len(digit_facts()) + 40
    assert not any("carry" in line or "," in line or ":" in line for line in corpus)


def test_a_few_pretraining_steps_lower_the_loss(tokenizer):
    import torch

    torch.set_num_threads(1)
    spec = TinyModelSpec(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    model = build_model(spec, tokenizer, seed=0)
    settings = PretrainSettings(steps=6, batch_size=8, lr=1e-2, warmup_steps=0, direct_problems=20)
    stats = pretrain(model, tokenizer, pretrain_corpus(settings), settings, log_every=100)
    assert {"steps", "first_loss", "final_loss", "seconds", "corpus_lines"} <= set(stats)
    assert stats["steps"] == 6
    assert stats["corpus_lines"] == len(digit_facts()) + 20
    assert math.isfinite(stats["first_loss"]) and math.isfinite(stats["final_loss"])
    assert stats["first_loss"] > math.log(len(tokenizer)) * 0.7  # starts near uniform
    assert stats["final_loss"] < stats["first_loss"]
    assert not model.training  # left in eval mode
    assert tokenizer.padding_side == "left"  # restored for generation
