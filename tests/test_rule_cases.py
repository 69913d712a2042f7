"""Every rule's own VALID and INVALID cases, collected from the rule classes (as in Fixit)."""
import textwrap

import pytest

from torchcheck.registry import all_rules
from torchcheck.testing import fix_snippet, lint_snippet

VALID = [pytest.param(rule, code, id=f"{rule.code}-valid-{i}") for rule in all_rules() for i, code in enumerate(rule.VALID)]
INVALID = [pytest.param(rule, case, id=f"{rule.code}-invalid-{i}") for rule in all_rules() for i, case in enumerate(rule.INVALID)]


@pytest.mark.parametrize("rule, code", VALID)
def test_valid_case_gives_no_finding(rule, code):
    findings = lint_snippet(code, [rule])
    assert findings == [], "\n".join(f"{f.line}:{f.column} {f.message}" for f in findings)


@pytest.mark.parametrize("rule, case", INVALID)
def test_invalid_case_gives_one_finding(rule, case):
    findings = lint_snippet(case.code, [rule])
    assert [f.code for f in findings] == [rule.code]
    assert findings[0].name == rule.name


@pytest.mark.parametrize("rule, case", [p for p in INVALID if p.values[1].fixed is not None])
def test_invalid_case_fix(rule, case):
    assert fix_snippet(case.code, [rule]) == textwrap.dedent(case.fixed).lstrip("\n")


@pytest.mark.parametrize("rule, case", INVALID)
def test_fix_availability_matches_declaration(rule, case):
    for finding in lint_snippet(case.code, [rule]):
        if finding.fix is not None:
            assert rule.fix_safety is not None, f"{rule.name} emits a fix but declares none"
    if case.fixed is not None:
        assert rule.fix_safety is not None
