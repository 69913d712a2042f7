"""Lint a snippet in memory: the helper the rule-case tests and users' own rule tests use."""
from __future__ import annotations

import textwrap
from pathlib import Path

from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.linter import lint_source
from torchcheck.fixes import apply_fixes
from torchcheck.types import Finding


def lint_snippet(code: str, rules=None, config: Config | None = None, path: str = "snippet.py") -> list[Finding]:
    from torchcheck.registry import all_rules

    source = textwrap.dedent(code).lstrip("\n")
    result = lint_source(source.encode(), Path(path), config or Config(), list(rules or all_rules()), Project(),
                         name=Path(path).stem, shown=path)
    return sorted(result.findings, key=lambda f: f.sort_key)


def fix_snippet(code: str, rules=None, unsafe: bool = True) -> str:
    source = textwrap.dedent(code).lstrip("\n")
    findings = lint_snippet(source, rules)
    return apply_fixes(source, findings, unsafe=unsafe)[0]
