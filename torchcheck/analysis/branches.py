"""Which branch runs where the code compares a string it knows: `if name == "softmax":`,
`match activation: case "softmax":`. The summary of a call (`make_activation("softmax")`) follows
the branch taken; a function's own evaluation, which records what every expression holds, keeps
every branch."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis.syntax import literal


def known_text(frame, node: cst.CSTNode) -> str | None:
    """The string a name, attribute or literal holds, if known (evaluating it has no side effects)."""
    if type(node) in (cst.Name, cst.Attribute, cst.SimpleString):
        return frame.eval(node).text
    return None


def if_taken(frame, test: cst.BaseExpression) -> bool | None:
    """Whether `name == "softmax"`, `name != "relu"` or `name in ("softmax", "sigmoid")` holds; None
    when not known."""
    if type(test) is not cst.Comparison or len(test.comparisons) != 1:
        return None
    left = known_text(frame, test.left)
    if left is None:
        return None
    operator, right = test.comparisons[0].operator, test.comparisons[0].comparator
    if type(operator) in (cst.Equal, cst.NotEqual):
        text = known_text(frame, right)
        return None if text is None else (left == text) == (type(operator) is cst.Equal)
    if type(operator) in (cst.In, cst.NotIn) and type(right) in (cst.Tuple, cst.List, cst.Set):
        texts = [known_text(frame, element.value) for element in right.elements]
        return None if None in texts else (left in texts) == (type(operator) is cst.In)
    return None


def case_taken(frame, stmt: cst.Match) -> cst.MatchCase | None:
    """The case that a known string subject runs; None when not known."""
    subject = known_text(frame, stmt.subject)
    if subject is None:
        return None
    for case in stmt.cases:
        matches = _matches(case.pattern, subject) if case.guard is None else None
        if matches is None:
            return None
        if matches:
            return case
    return None


def _matches(pattern: cst.MatchPattern, text: str) -> bool | None:
    if isinstance(pattern, cst.MatchValue):
        value = literal(pattern.value)
        return value == text if isinstance(value, str) else None
    if isinstance(pattern, cst.MatchAs) and pattern.pattern is None:
        return True  # `case _:`, `case other:`
    if isinstance(pattern, cst.MatchOr):
        verdicts = [_matches(element.pattern, text) for element in pattern.patterns]
        return True if True in verdicts else None if None in verdicts else False
    return None
