# ruff: noqa: E501, E701, E741
"""Writes tests/grading_corpus.jsonl: the grading corpus as (gold, completion, expected verdict, reason) cases.

Expected verdicts are what a careful human grader says. Where math-verify itself disagrees and we accept it, the
case carries `known_limitation` (why) and `limitation_status` (what the grader says instead). Edit the cases
here and run `python tests/make_grading_corpus.py`; tests/test_grading_corpus.py grades every case.
"""

import json
import sys
from pathlib import Path

C, I, N, G = "correct", "incorrect", "no_answer", "gold_invalid"
cases = []
def add(cat, gold, completion, expected, reason, **extra):
    cases.append(dict(category=cat, gold=gold, completion=completion, expected=expected, reason=reason, **extra))
def B(x: str) -> str:
    return "The answer is $\\boxed{" + x + "}$."


# integers
for g, c, e, r in [
    ("42", B("42"), C, "same integer"),
    ("42", "\\boxed{42}", C, "bare box"),
    ("42", B("43"), I, "off by one"),
    ("0", B("0"), C, "zero"),
    ("0", B("-0"), C, "minus zero is zero"),
    ("7", B("007"), C, "leading zeros"),
    ("100", B("10^2"), C, "a power equal to the integer"),
    ("100", B("100.0"), C, "integer written as a decimal"),
    ("12", B("12."), C, "trailing point"),
    ("12", "After simplification we get $\\boxed{12}$ apples.", C, "box in a sentence"),
    ("3", B("\\mathbf{3}"), C, "bold number"),
    ("3", B("\\textbf{3}"), C, "textbf number"),
    ("204", B("240"), I, "digits swapped"),
    ("1", B("1"), C, "one"),
    ("15", B("3 \\cdot 5"), C, "unevaluated product"),
    ("15", B("3\\times 5"), C, "times product"),
    ("2024", B("2024"), C, "year-like integer"),
    ("5", B("x"), I, "a variable is not a number"),
]: add("integer", g, c, e, r)
# thousands separators
for g, c, e, r in [
    ("18000", B("18,000"), C, "thousands comma"),
    ("18000", B("18{,}000"), C, "thousands comma in braces"),
    ("18000", B("18\\,000"), C, "thin-space thousands separator"),
    ("1234567", B("1,234,567"), C, "two thousands commas"),
    ("1234567", "The total is 1,234,567 dollars.", C, "thousands commas without a box"),
    ("18000", B("18000"), C, "plain"),
    ("18000", B("18,001"), I, "wrong with separator"),
    ("1000", "#### 1,000", C, "GSM8K style answer line with separator"),
    ("5,000", B("5000"), C, "separator in the gold"),
    ("26000", B("26,000"), C, "MATH-500 gold 26000"),
]: add("thousands_separator", g, c, e, r)
# decimals
for g, c, e, r in [
    ("0.5", B("\\frac{1}{2}"), C, "decimal gold, fraction answer"),
    ("0.25", B("0.25"), C, "same decimal"),
    ("0.25", B(".25"), C, "leading point omitted"),
    ("3.14", B("3.14"), C, "same decimal"),
    ("3.14", B("3.15"), I, "different decimal"),
    ("2.5", B("2.50"), C, "trailing zero"),
    ("0.554", B("0.554"), C, "Minerva decimal"),
    ("4.4677", B("4.4677"), C, "Minerva four decimals"),
    ("4.4677", B("4.47"), C, "rounded to the gold's precision: math-verify rounds the answer-to-gold comparison"),
    ("-0.2", B("-0.2"), C, "negative decimal"),
    ("-0.2", B("-\\frac{1}{5}"), C, "negative decimal as fraction"),
    ("0.3333", B("\\frac{1}{3}"), C, "fraction matches a rounded decimal gold"),
    ("1.5", B("1.6"), I, "different decimal"),
    ("18.90", B("18.9"), C, "money decimal"),
    ("\\$18.90", B("\\$18.90"), C, "MATH-500 dollar gold"),
    ("\\$18.90", B("18.90"), C, "dollar gold, bare answer"),
]: add("decimal", g, c, e, r)
# fractions
for g, c, e, r in [
    ("\\frac{1}{2}", B("\\frac{1}{2}"), C, "same fraction"),
    ("\\frac{1}{2}", B("\\dfrac{1}{2}"), C, "dfrac"),
    ("\\frac{1}{2}", B("\\tfrac{1}{2}"), C, "tfrac"),
    ("\\frac{1}{2}", B("1/2"), C, "slash fraction"),
    ("\\frac{1}{2}", B("\\frac{2}{4}"), C, "unreduced fraction"),
    ("\\frac{1}{2}", B("0.5"), C, "decimal"),
    ("\\frac{1}{2}", B("\\frac{1}{3}"), I, "different fraction"),
    ("\\frac9{19}", B("\\frac{9}{19}"), C, "MATH-500 braceless frac gold"),
    ("\\frac9{19}", B("9/19"), C, "braceless gold, slash answer"),
    ("\\dfrac{17}{50}", B("0.34"), C, "dfrac gold, decimal answer"),
    ("\\dfrac{17}{50}", B("\\frac{17}{50}"), C, "dfrac gold"),
    ("-\\frac{3}{4}", B("\\frac{-3}{4}"), C, "sign in numerator"),
    ("-\\frac{3}{4}", B("-\\frac34"), C, "braceless negative fraction"),
    ("\\frac{3}{4}", B("-\\frac{3}{4}"), I, "sign error"),
    ("137 \\frac{1}{2}", B("137.5"), C, "a mixed number (MATH-500 gold) is 137.5"),
    ("\\frac{14}{15}", B("14/15"), C, "OlympiadBench fraction"),
    ("\\frac{1}{2 n+2}", B("\\frac{1}{2(n+1)}"), C, "symbolic fraction factored"),
    ("\\frac{1}{2 n+2}", B("\\frac{1}{2n+1}"), I, "symbolic fraction wrong"),
    ("\\frac{9}{2}", B("4.5"), C, "improper fraction as decimal"),
    ("\\frac{9}{2}", B("4\\frac{1}{2}"), C, "a mixed number answer is 4.5"),
]: add("fraction", g, c, e, r)
# roots
for g, c, e, r in [
    ("2 \\sqrt{5}", B("2\\sqrt{5}"), C, "same root"),
    ("2 \\sqrt{5}", B("\\sqrt{20}"), C, "root simplified differently"),
    ("2 \\sqrt{5}", B("2\\sqrt5"), C, "braceless sqrt"),
    ("2 \\sqrt{5}", B("4.472"), I, "a decimal approximation of an exact root is not the exact answer"),
    ("2 \\sqrt{5}", B("\\sqrt{10}"), I, "different root"),
    ("1+2\\sqrt{3}", B("2\\sqrt{3}+1"), C, "reordered sum"),
    ("1 \\pm \\sqrt{19}", B("1 \\pm \\sqrt{19}"), C, "plus-minus gold"),
    ("1 \\pm \\sqrt{19}", B("1+\\sqrt{19}, 1-\\sqrt{19}"), C, "plus-minus written as two roots"),
    ("1 \\pm \\sqrt{19}", B("1+\\sqrt{19}"), I, "only one of the two roots"),
    ("\\frac{8}{\\sqrt[3]{7}}", B("\\frac{8\\sqrt[3]{49}}{7}"), C, "rationalized cube root"),
    ("5 \\sqrt[3]{4}", B("5\\sqrt[3]{4}"), C, "cube root"),
    ("5 \\sqrt[3]{4}", B("5 \\cdot 4^{1/3}"), C, "cube root as power"),
    ("\\sqrt{2}-1", B("\\frac{1}{\\sqrt{2}+1}"), C, "conjugate form"),
    ("\\frac{\\sqrt{3}}{2}", B("\\frac{1}{2}\\sqrt{3}"), C, "coefficient moved"),
    ("\\frac{\\sqrt{3}}{2}", B("\\frac{\\sqrt{2}}{2}"), I, "different root"),
]: add("root", g, c, e, r)
# pi
for g, c, e, r in [
    ("12\\pi", B("12\\pi"), C, "same multiple of pi"),
    ("12\\pi", B("12 \\pi"), C, "spaced"),
    ("12\\pi", B("\\pi \\cdot 12"), C, "reordered"),
    ("12\\pi", B("37.70"), I, "a decimal approximation of an exact pi answer is not the exact answer"),
    ("12\\pi", B("6\\pi"), I, "wrong coefficient"),
    ("\\frac{3 \\pi}{4}", B("\\frac{3}{4}\\pi"), C, "coefficient fraction"),
    ("\\frac{3 \\pi}{4}", B("135^\\circ"), C, "the same angle written in degrees"),
    ("\\frac{\\pi}{6}", B("\\pi/6"), C, "slash"),
    ("2 \\pi / \\omega", B("\\frac{2\\pi}{\\omega}"), C, "Minerva period"),
    ("\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", B("\\left[\\frac{\\pi^2}{8},\\frac{5\\pi^2}{4}\\right]"), C, "MATH-500 closed interval with pi"),
    ("548 \\pi", B("548\\pi"), C, "OlympiadBench pi"),
    ("1024-256 \\pi", B("1024 - 256\\pi"), C, "pi in a difference"),
]: add("pi", g, c, e, r)
# percentages
for g, c, e, r in [
    ("20\\%", B("20\\%"), C, "same percentage"),
    ("20", B("20\\%"), C, "percent sign on the answer only"),
    ("20\\%", B("20"), C, "percent sign on the gold only"),
    ("20\\%", B("0.2"), C, "percentage as a fraction of one"),
    ("20\\%", B("25\\%"), I, "different percentage"),
    ("12.5", B("12.5\\%"), C, "decimal percentage"),
    ("40", "So the discount is 40%.", C, "bare percentage in text"),
    ("40", "So the discount is 45 percent.", I, "bare wrong percentage in text"),
]: add("percentage", g, c, e, r)
# degrees
for g, c, e, r in [
    ("4^{\\circ}", B("4^\\circ"), C, "OlympiadBench degrees"),
    ("4^{\\circ}", B("4"), C, "degrees dropped"),
    ("30", B("30^\\circ"), C, "degree sign on the answer only"),
    ("30", B("30^{\\circ}"), C, "braced degree sign"),
    ("30", B("30\\text{ degrees}"), C, "degrees in words"),
    ("30", B("\\frac{\\pi}{6}"), I, "degree gold, radian answer: math-verify does not convert; a human asked for degrees says wrong"),
    ("30", B("31^\\circ"), I, "wrong angle"),
    ("120^\\circ", B("120"), C, "degree gold, bare answer"),
    ("75^\\circ", B("75^{\\circ}"), C, "same angle"),
]: add("degrees", g, c, e, r)
# units and text
for g, c, e, r in [
    ("6630", B("6630 \\text{ K}"), C, "Minerva kelvin"),
    ("6630", B("6630\\,\\mathrm{K}"), C, "mathrm unit"),
    ("800", B("800 \\text{ km}"), C, "unit text"),
    ("800", B("800 \\mathrm{~km}"), C, "Minerva-style unit"),
    ("10", B("10 \\text{ cm}"), C, "centimetres"),
    ("10", B("10 \\text{ inches}"), C, "inches"),
    ("10", B("10 \\text{ dollars}"), C, "dollars in words"),
    ("10", B("\\$10"), C, "dollar sign"),
    ("10", B("11 \\text{ cm}"), I, "wrong number with unit"),
    ("\\text{(C)}", B("\\text{(C)}"), C, "multiple choice letter"),
    ("\\text{(C)}", B("C"), C, "bare choice letter"),
    ("\\text{(C)}", B("(C)"), C, "parenthesized letter"),
    ("\\text{(C)}", B("\\text{(D)}"), I, "wrong letter"),
    ("\\text{ellipse}", B("\\text{ellipse}"), C, "word answer"),
    ("\\text{ellipse}", B("\\text{parabola}"), I, "wrong word"),
    ("\\text{Monday}", B("\\text{Monday}"), C, "day name"),
    ("\\text{Monday}", B("\\text{Tuesday}"), I, "wrong day"),
    ("\\text{even}", B("\\text{even}"), C, "parity word"),
    ("\\text{even}", B("\\text{odd}"), I, "wrong parity"),
    ("5", B("5 \\text{ apples}"), C, "count with noun"),
    ("3", B("3\\text{ hours}"), C, "hours"),
    ("70", B("70 \\text{ mph}"), C, "speed unit"),
]: add("units_text", g, c, e, r)
# intervals
for g, c, e, r in [
    ("(1,2)", B("(1,2)"), C, "same open interval"),
    ("(1,2)", B("[1,2]"), I, "closed instead of open"),
    ("[-3,5)", B("[-3,5)"), C, "half-open"),
    ("[-3,5)", B("[-3,5]"), I, "wrong endpoint type"),
    ("(-\\infty, 2]", B("(-\\infty,2]"), C, "infinite interval"),
    ("(-\\infty, 2]", B("x \\le 2"), C, "inequality for an interval"),
    ("(-\\infty,0)\\cup(0,\\infty)", B("(-\\infty,0) \\cup (0,\\infty)"), C, "union of intervals"),
    ("(-\\infty,0)\\cup(0,\\infty)", B("\\mathbb{R}\\setminus\\{0\\}"), C, "set difference form"),
    ("(-\\infty,0)\\cup(0,\\infty)", B("(-\\infty, 0)"), I, "half of the union"),
    ("1<x<2", B("(1,2)"), C, "relation gold, interval answer"),
    ("[2,5]", B("2 \\le x \\le 5"), C, "interval gold, chained inequality answer"),
    ("(0,\\infty)", B("(0, \\infty)"), C, "positive reals"),
    ("(2,6]", B("(2, 6]"), C, "spaced half-open"),
]: add("interval", g, c, e, r)
# sets and tuples
for g, c, e, r in [
    ("(1,1), (3,2)", B("(1,1),(3,2)"), C, "OlympiadBench pairs"),
    ("(1,1), (3,2)", B("(3,2),(1,1)"), C, "pairs in another order"),
    ("(1,1), (3,2)", B("(1,1)"), I, "one pair missing"),
    ("(\\frac{1}{4}, \\frac{1}{27})", B("\\left(\\frac14,\\frac1{27}\\right)"), C, "tuple of fractions"),
    ("(\\frac{1}{4}, \\frac{1}{27})", B("(\\frac{1}{27}, \\frac{1}{4})"), I, "an ordered pair reversed"),
    ("(-6,6), (2,6)", B("(2,6), (-6,6)"), C, "pairs reordered"),
    ("\\{1,2,3\\}", B("\\{3,2,1\\}"), C, "set order does not matter"),
    ("\\{1,2,3\\}", B("1,2,3"), C, "set without braces"),
    ("\\{1,2,3\\}", B("\\{1,2\\}"), I, "missing element"),
    ("(3,4)", B("(3, 4)"), C, "point"),
    ("(3,4)", B("(4,3)"), I, "swapped coordinates"),
    ("(2,3,5)", B("(2,3,5)"), C, "triple"),
    ("(312,123,231)", B("(312,123,231)"), C, "OlympiadBench triple"),
    ("\\emptyset", B("\\emptyset"), C, "empty set"),
    ("\\emptyset", B("\\{\\}"), C, "empty braces set"),
]: add("set_tuple", g, c, e, r)
# multiple answers
for g, c, e, r in [
    ("1,-2", "\\boxed{-2} and \\boxed{1}", C, "two boxes together form the multi-answer gold"),
    ("1,-2", "$\\boxed{-2}$, $\\boxed{1}$", C, "two boxed environments"),
    ("1,-2", B("1,-2"), C, "one box with both"),
    ("1,-2", B("-2,1"), C, "reordered"),
    ("1,-2", B("x=1, x=-2"), C, "as equations"),
    ("1,-2", B("1"), I, "one of two answers"),
    ("1,-2", "\\boxed{1}", I, "one box of two answers"),
    ("2,3,4", "\\boxed{2}, \\boxed{3}, \\boxed{4}", C, "three boxes"),
    ("2,3,4", B("2, 3, 4"), C, "three in one box"),
    ("2,3,4", B("2, 3"), I, "one missing"),
    ("2,3,4", B("2, 3, 4, 5"), I, "one extra"),
    ("8,32,44,68,80", B("8, 32, 44, 68, 80"), C, "OlympiadBench list of five"),
    ("8,32,44,68,80", B("80, 68, 44, 32, 8"), C, "list of five reversed"),
    ("41352,42351,51342", B("41352, 42351, 51342"), C, "list of large integers: not thousands separators"),
    ("\\frac{1}{3}, 1, 9", B("\\frac13, 1, 9"), C, "mixed list"),
    ("\\sqrt{2}-1, \\frac{3-\\sqrt{2}}{7}", B("\\sqrt{2}-1, \\frac{3-\\sqrt{2}}{7}"), C, "list of roots"),
    ("27,54,108,135,189,216,270,297,351,378", B("27,54,108,135,189,216,270,297,351,378"), C, "list of ten: read as a set, not thousands"),
    ("1,3", "The solutions are $x=1$ and $x=3$, so $\\boxed{1}$ and $\\boxed{3}$.", C, "two boxes in a sentence"),
    ("1,3", "\\boxed{1} \\boxed{3}", C, "adjacent boxes"),
    ("-1, 1", B("\\pm 1"), C, "plus-minus one"),
]: add("multiple_answers", g, c, e, r)
# equations
for g, c, e, r in [
    ("3", B("x = 3"), C, "answer as an equation"),
    ("x=3", B("3"), C, "gold as an equation"),
    ("x=3", B("x=3"), C, "same equation"),
    ("3", B("x = 4"), I, "wrong equation"),
    ("k=1", B("1"), C, "OlympiadBench k=1"),
    ("k=1", B("k = 1"), C, "same"),
    ("y=2x+1", B("y = 2x + 1"), C, "line"),
    ("y=2x+1", B("y = 1 + 2x"), C, "line reordered"),
    ("y=2x+1", B("y = 2x - 1"), I, "wrong line"),
    ("m_{\\max }=n^{2}-n-1", B("n^2-n-1"), G, "a gold math-verify cannot parse (\\max subscript) is never scored"),
    ("6r^2-4r-24", B("6r^2 - 4r - 24"), C, "polynomial"),
    ("6r^2-4r-24", B("2(3r^2-2r-12)"), C, "factored polynomial"),
    ("6r^2-4r-24", B("6r^2-4r+24"), I, "sign error"),
    ("x^3+3x-6", B("x^3+3x-6"), C, "cubic"),
    ("-t^2 - t - 3", B("-(t^2+t+3)"), C, "Minerva polynomial"),
    ("2^{k}", B("2^k"), C, "power of k"),
    ("k\\left(4 k^{2}+k-1\\right) / 2", B("\\frac{4k^3+k^2-k}{2}"), C, "expanded"),
    ("a = 2, b = 3", B("a=2, b=3"), C, "two equations"),
    ("a = 2, b = 3", B("a=3, b=2"), I, "swapped values"),
    ("f(x) = 2x", B("2x"), C, "function value without its name"),
]: add("equation", g, c, e, r)
# matrices
for g, c, e, r in [
    ("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", B("\\begin{pmatrix} \\frac{1}{5} \\\\ -\\frac{18}{5} \\end{pmatrix}"), C, "MATH-500 vector"),
    ("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", B("\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}"), C, "vector as decimals"),
    ("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", B("\\begin{pmatrix} 1/5 \\\\ 18/5 \\end{pmatrix}"), I, "sign error in a component"),
    ("\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}", B("\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}"), C, "3-vector"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", B("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"), C, "2x2 matrix"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", B("\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}"), C, "bmatrix for pmatrix"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", B("\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}"), I, "transposed"),
    ("\\begin{pmatrix} 2 \\\\ 3 \\end{pmatrix}", B("(2,3)"), C, "column vector as a tuple: same vector"),
    ("\\begin{pmatrix} 0 & 0 \\\\ 0 & 0 \\end{pmatrix}", B("\\begin{pmatrix} 0 & 0 \\\\ 0 & 0 \\end{pmatrix}"), C, "zero matrix"),
    ("\\begin{pmatrix} 0 & 0 \\\\ 0 & 0 \\end{pmatrix}", B("0"), I, "scalar for a matrix"),
]: add("matrix", g, c, e, r)
# times of day
for g, c, e, r in [
    ("\\text{4:30 p.m.}", B("\\text{4:30 p.m.}"), C, "same time"),
    ("4:30", B("4:30"), C, "clock time"),
    ("4:30", B("4:45"), I, "wrong clock time"),
    ("9:00", B("9:00"), C, "on the hour"),
    ("12:15", B("12:15"), C, "quarter past"),
    ("12:15", B("12:51"), I, "digits swapped"),
]: add("time_of_day", g, c, e, r)
# negative numbers
for g, c, e, r in [
    ("-2", B("-2"), C, "negative integer"),
    ("-2", B("2"), I, "sign dropped"),
    ("-50", B("-50"), C, "MATH-500 negative"),
    ("-4", B("- 4"), C, "spaced minus"),
    ("-4", B("-(4)"), C, "parenthesized"),
    ("-4", B("−4"), C, "unicode minus sign"),
    ("-\\frac{1}{2}", B("-0.5"), C, "negative half"),
    ("-1", B("(-1)"), C, "parenthesized negative"),
]: add("negative", g, c, e, r)
# scientific notation (Minerva)
for g, c, e, r in [
    ("1.24e-8", B("1.24 \\times 10^{-8}"), C, "Minerva e-notation gold, times-ten answer"),
    ("4.46e19", B("4.46 \\times 10^{19}"), C, "large exponent"),
    ("9.35e5", B("9.35\\times10^5"), C, "braceless exponent"),
    ("9.35e5", B("935000"), C, "written out"),
    ("6.5e-2", B("0.065"), C, "small written out"),
    ("1e11", B("10^{11}"), C, "power of ten"),
    ("2e27", B("2 \\times 10^{27}"), C, "2e27"),
    ("7.353e14", B("7.353 \\times 10^{14}"), C, "four significant figures"),
    ("1.325e-27", B("1.325 \\times 10^{-27}"), C, "tiny"),
    ("4.6e-24", B("4.6 \\times 10^{-24}"), C, "tiny 2"),
    ("1.24e-8", B("1.24 \\times 10^{-9}"), I, "exponent off by one"),
    ("3.3e12", B("3.3 \\times 10^{12}"), C, "3.3e12"),
    ("1.45e-5", B("1.45 \\cdot 10^{-5}"), C, "cdot ten"),
    ("0.0000001", B("10^{-7}"), C, "plain decimal gold"),
    ("2.5 \\times 10^{20}", B("250000000000000000000"), C, "written out large"),
    ("1.07e16", B("1.1 \\times 10^{16}"), C, "rounded to two significant figures: accepted"),
]: add("scientific_notation", g, c, e, r)
# hedged answers
for g, c, e, r in [
    ("5", "\\boxed{3} or \\boxed{5}", I, "hedging between two answers is wrong"),
    ("5", "It is either $\\boxed{3}$ or $\\boxed{5}$.", I, "hedge in environments"),
    ("5", "\\boxed{5} or maybe \\boxed{3}", I, "hedge with the right answer first"),
    ("5", B("3 \\text{ or } 5"), I, "hedge inside one box"),
    ("5", B("3, 5"), I, "two answers for one"),
    ("5", "maybe \\boxed{3}? no: \\boxed{5}", I, "a correction within 10 characters: math-verify reads both boxes"),
    ("5", "Trying small cases first gives \\boxed{3}. Wait, that ignores the constraint on the product, so we redo the count carefully. Counting again over every residue class we get \\boxed{5}.", C, "a far earlier box is an abandoned attempt: only the final box counts"),
    ("5", "\\boxed{5}\\boxed{5}", C, "a repeated box is one answer"),
    ("5", "\\boxed{5}, i.e. \\boxed{5}", C, "the same answer boxed twice"),
    ("3", "\\boxed{3} or \\boxed{5}", I, "hedge, first one right"),
]: add("hedged", g, c, e, r)
# no box
for g, c, e, r in [
    ("122", "The answer is 122", C, "answer phrase, no box"),
    ("122", "Therefore the final answer is 122.", C, "final answer line"),
    ("122", "Final Answer: The final answer is $122$. I hope it is correct.", C, "lighteval format"),
    ("122", "We compute 100 + 22 = 122.", C, "last number of an unboxed solution"),
    ("122", "We compute 100 + 23 = 123.", I, "wrong unboxed number"),
    ("\\frac{1}{2}", "The probability is $\\frac{1}{2}$.", C, "inline math answer"),
    ("\\frac{1}{2}", "The probability is \\(\\frac{1}{2}\\).", C, "paren math"),
    ("\\frac{1}{2}", "The probability is\n\\[\\frac{1}{2}\\]", C, "display math"),
    ("5", "I am not sure how to proceed.", N, "no answer at all"),
    ("5", "", N, "empty completion"),
    ("5", "Let me think about this problem step by step.", N, "reasoning without numbers"),
    ("42", "Answer: 42", C, "Answer: line"),
    ("42", "**Answer:** 42", C, "markdown answer"),
    ("42", "#### 42", C, "GSM8K answer marker"),
    ("18", "Janet sells 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = $18 every day.\n#### 18", C, "GSM8K worked answer"),
    ("18", "She makes $18 a day.", C, "dollar amount without math delimiters"),
    ("18", "So the answer is 18 dollars.", C, "dollars in words"),
    ("7", "x = 7", C, "bare equation"),
    ("7", "The final answer is 7. Then I double-checked with 8 cases.", C, "the final-answer line counts, not a later number"),
]: add("no_box", g, c, e, r)
# truncated
for g, c, e, r in [
    ("5", "We first compute \\boxed{\\frac{1}{2", N, "truncated inside the only box"),
    ("5", "Let the sides be 3 and 4, then the hypotenuse is", N, "truncated before any answer: numbers in the reasoning are not an answer"),
    ("5", "First, \\boxed{5} is a guess. Then we compute \\boxed{\\frac{3", N, "truncated after an earlier box labelled a guess: no final answer"),
    ("12", "We sum: 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 + 16", N, "cut off mid-sum"),
    ("5", "\\boxed{", N, "an opening box only"),
    ("5", "\\boxed{5", N, "an unclosed box is a truncated answer"),
    ("5", "The answer is \\boxed{}", N, "empty box"),
]: add("truncated", g, c, e, r)
# nonsense golds
for g, c, e, r in [
    ("\\frac{1}{2", B("\\frac{1}{2}"), G, "unbalanced braces in the gold"),
    ("\\sqrt{2}}", B("\\sqrt{2}"), G, "an extra closing brace in the gold"),
    ("\\newcommand{\\x}{5}\\x", B("5"), G, "a TeX macro definition is not an answer"),
    ("\\def\\x{5}\\x", B("5"), G, "a def macro"),
    ("\\renewcommand{\\a}{1}", B("1"), G, "a renewcommand"),
    ("\\boxed{}", B("5"), G, "an empty boxed gold"),
    ("", B("5"), G, "an empty gold"),
    ("   ", B("5"), G, "a blank gold"),
    ("np.arcsin(10/13)", B("\\arcsin(10/13)"), G, "Minerva gold written as Python code"),
    ("-1./3", B("-\\frac{1}{3}"), G, "Minerva gold with a stray point math-verify cannot parse"),
    ("$221,$8$", B("221"), G, "a gold with unbalanced dollar delimiters is nonsense"),
    ("\\boxed{\\boxed{}}", B("5"), G, "nested empty boxes"),
]: add("gold_invalid", g, c, e, r)
# boxed chain semantics (which boxes are read)
for g, c, e, r in [
    ("5", "First \\boxed{3}. " + "Long reasoning. " * 10 + "Finally \\boxed{5}.", C, "an early box far from the last is ignored"),
    ("3", "First \\boxed{3}. " + "Long reasoning. " * 10 + "Finally \\boxed{5}.", I, "the early box does not count"),
    ("5", "\\boxed{\\boxed{5}}", C, "nested box"),
    ("5", "\\fbox{5}", C, "an fbox is a box to a human reader"),
    ("5", "$x = \\boxed{5}$", C, "box inside an equation"),
    ("5", "\\[\\boxed{5}\\]", C, "display box"),
    ("5", "The final answer is $\\boxed{5}$.", C, "final answer phrase with a box"),
    ("6", "\\boxed{5}. The final answer is 6.", C, "a final answer line after the box wins in math-verify"),
    ("5", "\\boxed{5}\n\nI hope this helps! Let me know if you have questions about step 2.", C, "chatter after the box"),
    ("5", "\\boxed{ 5 }", C, "spaces inside the box"),
    ("5", "\\boxed {5}", C, "a space before the brace is still a box"),
    ("\\{1,2\\}", "\\boxed{\\{1,2\\}}", C, "escaped braces inside a box"),
    ("5", "\\boxed{???}", N, "an unparseable box"),
    ("5", "The result is 5. \\boxed{???}", N, "an unparseable box after a number: the boxed answer is what the model gave"),
    ("a", "\\boxed{a}", C, "a letter"),
]: add("box_chain", g, c, e, r)
# GSM8K-style
for g, c, e, r in [
    ("72", "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72", C, "GSM8K reference format"),
    ("10", "Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10.\n#### 10", C, "GSM8K dollars"),
    ("5", "In total she needs 100 - 50 - 30 - 15 = $5 more.\n\\boxed{5}", C, "boxed after reasoning"),
    ("1200", "The answer is \\boxed{\\$1,200}.", C, "dollar thousands"),
    ("1200", "The answer is \\boxed{1200.00}.", C, "cents"),
    ("64", "The answer is \\boxed{64} square feet.", C, "unit after the box"),
    ("35", "So the total is \\boxed{35}", C, "plain"),
    ("35", "So the total is \\boxed{53}", I, "digits swapped"),
    ("3", "He needs $\\boxed{3}$ more boxes.", C, "boxed count"),
    ("-5", "The temperature dropped to $\\boxed{-5}$ degrees.", C, "negative temperature"),
]: add("gsm8k", g, c, e, r)
# hostile (in the corpus for the pool only; plain math-verify is not run on them)
add("hostile", "5", "x" * 100_000, N, "100 kB of text without an answer", hostile=True)
add("hostile", "5", "word " * 20_000 + "\\boxed{5}", C, "a long completion ending in the right box", hostile=True)
add("hostile", "5", "\\boxed{" + "{" * 50_000, N, "50,000 unclosed braces", hostile=True)
add("hostile", "5", "\\boxed{3} " * 5_000 + "\\boxed{5}", I, "thousands of adjacent boxes: a hedge", hostile=True)

LIMITS = {
    "trailing point": ("math-verify cannot parse a number ending in a point", N),
    "thin-space thousands separator": ("math-verify reads `18\\,000` as 18 times 000 (a product), not 18000", I),
    "rounded to the gold's precision: math-verify rounds the answer-to-gold comparison": ("math-verify compares numbers to a fixed relative precision; a human accepts the answer rounded to fewer digits than the gold", I),
    "fraction matches a rounded decimal gold": ("math-verify does not accept an exact value for a gold rounded to four digits", I),
    "the same angle written in degrees": ("math-verify does not convert degrees to radians", I),
    "decimal percentage": ("math-verify converts the answer's percent sign into a factor of 1/100 when the gold has none and the answer has a decimal", I),
    "inequality for an interval": ("math-verify does not equate a one-sided inequality with an interval", I),
    "interval gold, chained inequality answer": ("math-verify equates a chained inequality with an interval only when the interval is the answer (verify is asymmetric)", I),
    "column vector as a tuple: same vector": ("math-verify does not equate a column matrix with a tuple", I),
    "truncated before any answer: numbers in the reasoning are not an answer": ("math-verify reads the last number of an unfinished text as its answer", I),
    "cut off mid-sum": ("math-verify reads the last number of an unfinished text as its answer", I),
    "truncated after an earlier box labelled a guess: no final answer": ("math-verify reads the last closed box even when a later box was cut off", C),
    "an fbox is a box to a human reader": ("math-verify's box patterns need `\\boxed{`; an `\\fbox` alone is not read", N),
    "a space before the brace is still a box": ("math-verify's box patterns need `\\boxed{` without a space", N),
}
for case in cases:
    if case["reason"] in LIMITS:
        case["known_limitation"], case["limitation_status"] = LIMITS[case["reason"]]
    if case["reason"].startswith("an unparseable box after a number"):
        case["deviation"] = True  # plain parse(completion) falls back to the 5 before the box
    if case["category"] == "scientific_notation" and "e" in case["gold"] and "times" not in case["gold"]:
        if case["expected"] == C:
            case["known_limitation"] = "math-verify reads the e of an e-notation gold (1.24e-8) as Euler's number"
            case["limitation_status"] = I


target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("grading_corpus.jsonl")
out = target.open("w", encoding="utf-8")
ids = set()
for k, case in enumerate(cases):
    case = {"id": f"{case['category']}-{k:03d}", **case}
    out.write(json.dumps(case, ensure_ascii=False) + "\n")
print(len(cases))
