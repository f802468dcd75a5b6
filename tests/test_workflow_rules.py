"""Conventions of the Snakemake files, read statically (no DAG is built, so this stays in the fast loop).

- No rule is defined under an `if` (or any other Python block): every rule exists for every config, and a choice
  between variants is made by wildcard constraints or input functions. A rule that exists only for some configs
  makes the DAG, `--lint` and `quagmire plan` depend on which config was loaded first.
- Side effects on an environment (os.environ, sys.path, PATH, PYTHONPATH, the jobs' shell prefix) live in one
  commented block of rules/common.smk, so what a job's environment holds can be read in one place.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
BLOCK_START = "# ==== Side effects on an environment"
BLOCK_END = "# ==== end of the side-effect block"

# statements that define part of the workflow (a rule or what decides between rules)
DEFINITION = re.compile(r"^(rule\s+\w+\s*:|checkpoint\s+\w+\s*:|use\s+rule\b|localrules\s*:|ruleorder\s*:|"
                        r"module\s+\w+\s*:|wildcard_constraints\s*:)")
RULE_HEADER = re.compile(r"^(rule|checkpoint)\s+\w+\s*:|^use\s+rule\b")
SIDE_EFFECT = re.compile(r"os\.environ|os\.putenv|sys\.path|shell\.prefix|shell\.executable|PYTHONPATH|"
                         r"export\s+PATH|\benvvars\s*:")


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the code: docstrings blanked (line numbers kept), blank and comment lines dropped."""
    text = re.sub(r'"""[\s\S]*?"""', lambda m: '""' + "\n" * m.group().count("\n"), text)
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not
            line.lstrip().startswith("#")]


def definitions_inside_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, statement, enclosing block header) for each workflow definition nested in a Python block.

    Only a rule's own `wildcard_constraints:` may be indented (under its `rule` header)."""
    found = []
    headers: list[tuple[int, str]] = []  # (indent, stripped header) of the open blocks
    for number, line in _code_lines(text):
        indent, stripped = len(line) - len(line.lstrip()), line.strip()
        while headers and headers[-1][0] >= indent:
            headers.pop()
        if DEFINITION.match(stripped) and headers:
            enclosing = headers[-1][1]
            if not (stripped.startswith("wildcard_constraints") and RULE_HEADER.match(enclosing)):
                found.append((number, stripped, enclosing))
        if stripped.split(" #", 1)[0].rstrip().endswith(":"):
            headers.append((indent, stripped))
    return found


def side_effects_outside_block(text: str, has_block: bool) -> list[tuple[int, str]]:
    """(line, code) of each environment side effect that is not inside the marked block (when `has_block`)."""
    inside = False
    found = []
    lines = text.splitlines()
    code = dict(_code_lines(text))
    for number, raw in enumerate(lines, 1):
        if has_block and raw.startswith(BLOCK_START):
            inside = True
        elif has_block and raw.startswith(BLOCK_END):
            inside = False
        elif number in code and SIDE_EFFECT.search(code[number]) and not inside:
            found.append((number, raw.strip()))
    return found


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_no_rule_is_defined_inside_an_if_or_any_block(path: Path) -> None:
    found = definitions_inside_blocks(path.read_text())
    assert found == [], f"{path.name}: define these at the top level, choosing by wildcard constraints or input " \
                        f"functions: {found}"


def test_the_checker_sees_a_rule_under_an_if() -> None:
    text = 'rule a:\n    """doc\n    if x:\n    """\n    wildcard_constraints:\n        s="x",\n' \
           "if SHARDS == 1:\n\n    rule b:\n        output: 'b'\nelse:\n    use rule b as c with:\n" \
           "        output: 'c'\nwildcard_constraints:\n    study='x'\n"
    found = definitions_inside_blocks(text)
    assert [(line, header) for line, _, header in found] == [(9, "if SHARDS == 1:"), (12, "else:")]


def test_environment_side_effects_are_only_in_the_commented_block_of_common_smk() -> None:
    common = REPO / "rules" / "common.smk"
    text = common.read_text()
    assert text.count(BLOCK_START) == 1 and text.count(BLOCK_END) == 1
    assert text.index(BLOCK_START) < text.index(BLOCK_END)
    found = {path.name: side_effects_outside_block(path.read_text(), has_block=path == common)
             for path in WORKFLOW_FILES}
    assert {name: lines for name, lines in found.items() if lines} == {}
    # and the block does hold them: the jobs' prefix and the offline switch
    block = text[text.index(BLOCK_START):text.index(BLOCK_END)]
    assert "shell.prefix(" in block and 'os.environ.setdefault("HF_HUB_OFFLINE"' in block


def test_the_checker_sees_a_side_effect_outside_the_block() -> None:
    text = f'{BLOCK_START}\nos.environ["A"] = "1"\n{BLOCK_END}\n"""os.environ in a docstring"""\n' \
           '# os.environ in a comment\nshell.prefix("export PYTHONPATH=src; ")\n'
    assert side_effects_outside_block(text, has_block=True) == [(6, 'shell.prefix("export PYTHONPATH=src; ")')]
    assert [n for n, _ in side_effects_outside_block(text, has_block=False)] == [2, 6]
