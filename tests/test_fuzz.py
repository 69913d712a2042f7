"""Fuzzing the engine (bounded, for CI): on hypothesmith-generated programs and on mutations of the
fixtures (lines deleted, duplicated, swapped, dedented, calls wrapped over two lines) it never crashes
(no TC002), its output is deterministic, and fixes keep every guarantee."""
from pathlib import Path

import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fixes import check_fix_invariants

from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.linter import lint_source
from torchcheck.registry import all_rules

hypothesmith = pytest.importorskip("hypothesmith")
RULES = list(all_rules())
FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").rglob("*.py"))


def lint(source: str):
    result = lint_source(source.encode("utf-8", "surrogatepass"), Path("fuzz.py"), Config(), RULES, Project())
    return result.findings


def never_crashes(source: str) -> None:
    first = lint(source)
    assert not [f for f in first if f.code == "TC002"], [f.message for f in first if f.code == "TC002"]
    assert lint(source) == first


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(hypothesmith.from_grammar())
def test_generated_programs(source):
    never_crashes(source)


@st.composite
def mutated_fixture(draw):
    lines = draw(st.sampled_from(FIXTURES)).read_text(encoding="utf-8").splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "dedent", "wrap"]))
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "swap" and index + 1 < len(lines):
            lines[index], lines[index + 1] = lines[index + 1], lines[index]
        elif action == "wrap":  # a call's arguments over two lines, as real code writes long calls
            line = lines[index]
            opening, comma = line.find("("), line.find(", ", line.find("("))
            if 0 <= opening < comma:
                lines[index] = line[:comma + 1] + "\n" + " " * (opening + 1) + line[comma + 2:]
        else:
            lines[index] = lines[index].lstrip()
    return "".join(lines)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_fixture())
def test_mutated_fixtures(source):
    never_crashes(source)
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError:
        return
    check_fix_invariants(source)
