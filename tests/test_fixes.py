"""Autofix guarantees, on every fixture and on generated programs: fixed code parses, re-linting
finds none of the fixed findings, fixing twice changes nothing more, code outside the fixed spans
is untouched, files are written atomically and unwritable files are reported."""
import json
import shutil
import textwrap
from pathlib import Path

import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchcheck.analysis.project import Project
from torchcheck.autofix import fix_source
from torchcheck.cli import main
from torchcheck.config import Config
from torchcheck.linter import lint_source
from torchcheck.fixes import apply_fixes
from torchcheck.registry import all_rules

STATIC = Path(__file__).resolve().parent.parent / "fixtures" / "static"
FIXTURE_FILES = sorted(STATIC.rglob("*.py"))
RULES = list(all_rules())


def lint(source: str, name="m.py"):
    return lint_source(source.encode(), Path(name), Config(), RULES, Project()).findings


def check_fix_invariants(source: str) -> None:
    findings = lint(source)
    fixed, count, remaining = fix_source(source, Path("m.py"), Config(), RULES, Project(), unsafe=True)
    cst.parse_module(fixed)  # fixed code parses
    assert not [f for f in remaining if f.fix is not None], "a fixed finding came back"
    again, more, _ = fix_source(fixed, Path("m.py"), Config(), RULES, Project(), unsafe=True)
    assert (again, more) == (fixed, 0), "fixing twice changed more"
    # One pass of edits leaves everything outside the edited spans byte-identical.
    one_pass, applied = apply_fixes(source, findings, unsafe=True)
    edits = sorted((e for f in applied for e in f.fix.edits), key=lambda e: e.start)
    position, pieces = 0, []
    for edit in edits:
        pieces.append(source[position:edit.start])
        position = edit.end
    pieces.append(source[position:])
    rest = one_pass
    for piece in pieces:
        index = rest.find(piece)
        assert index >= 0, "text outside the fixed spans changed"
        rest = rest[index + len(piece):]


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.relative_to(STATIC).as_posix())
def test_fix_invariants_on_fixtures(path):
    check_fix_invariants(path.read_text(encoding="utf-8"))


SNIPPETS = [textwrap.dedent(code).strip("\n") for rule in RULES for code in rule.VALID] + [
    textwrap.dedent(case.code).strip("\n") for rule in RULES for case in rule.INVALID]
NOISE = st.sampled_from(["", "# a comment", "x = 1  # noqa", "\n", "pass", "import torch  # re-import"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SNIPPETS), NOISE), min_size=1, max_size=4))
def test_fix_invariants_on_generated_programs(parts):
    source = "\n".join(f"{noise}\n{snippet}" for snippet, noise in parts) + "\n"
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError:
        return
    assert lint(source) == lint(source)  # deterministic
    check_fix_invariants(source)


BUGGY = "import torch.nn as nn\ncriterion = nn.CrossEntropyLoss(size_average=False)\n"


def test_fix_writes_in_place_and_exit_code(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text(BUGGY)
    assert main(["lint", str(path), "--fix", "--format", "json"]) == 0
    assert path.read_text() == 'import torch.nn as nn\ncriterion = nn.CrossEntropyLoss(reduction="sum")\n'
    assert json.loads(capsys.readouterr().out)["summary"]["fixed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name != "m.py"], "temporary files left behind"


def test_findings_left_after_fix_exit_1(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text(BUGGY + "import torch.nn.functional as F\ndef f(m, x, y):\n    return F.cross_entropy(F.softmax(m(x), 1), y)\n")
    assert main(["lint", str(path), "--fix"]) == 1  # the softmax fix is unsafe: not applied
    assert "reduction=" in path.read_text() and "F.softmax" in path.read_text()
    assert main(["lint", str(path), "--fix", "--unsafe-fixes"]) == 0
    assert "F.softmax" not in path.read_text()


def test_diff_writes_nothing(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text(BUGGY)
    assert main(["lint", str(path), "--diff"]) == 1
    out = capsys.readouterr().out
    assert '-criterion = nn.CrossEntropyLoss(size_average=False)' in out
    assert '+criterion = nn.CrossEntropyLoss(reduction="sum")' in out
    assert path.read_text() == BUGGY


def test_fix_keeps_encoding_and_bom(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_bytes(b"\xef\xbb\xbf# caf\xc3\xa9\n" + BUGGY.encode())
    main(["lint", str(path), "--fix"])
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf# caf\xc3\xa9\n") and b'reduction="sum"' in data
    latin = tmp_path / "l.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + BUGGY.encode())
    main(["lint", str(latin), "--fix"])
    assert latin.read_bytes().startswith(b"# -*- coding: latin-1 -*-\n# caf\xe9\n")


def test_unwritable_file_is_reported(tmp_path, capsys, monkeypatch):
    import torchcheck.autofix as autofix

    def refuse(path, text, encoding):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(autofix, "write_atomically", refuse)
    path = tmp_path / "m.py"
    path.write_text(BUGGY)
    code = main(["lint", str(path), "--fix", "--format", "json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert code == 2
    assert {f["code"] for f in findings} == {"TC003", "TC401"}
    assert path.read_text() == BUGGY


def test_linting_writes_nothing_but_its_cache(tmp_path, capsys):
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    main(["lint", str(copy), "--format", "json", "--no-cache"])
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    main(["lint", str(copy), "--format", "json"])
    after = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and ".torchcheck_cache" not in p.parts}
    assert after == before


MULTI_LINE_ACCUMULATION = """\
import torch.nn as nn
criterion = nn.CrossEntropyLoss(size_average=False)
def train(model, loader, optimizer):
    running = 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        running += criterion(model(x),
                             y)
    return running
"""


def test_fix_is_built_from_source_not_from_the_message(tmp_path, capsys):
    path = tmp_path / "m.py"
    path.write_text(MULTI_LINE_ACCUMULATION)
    assert main(["lint", str(path), "--fix", "--unsafe-fixes", "--format", "json"]) == 0
    fixed = path.read_text()
    assert "…" not in fixed
    assert "running += criterion(model(x),\n                             y).item()" in fixed
    assert 'reduction="sum"' in fixed


def test_a_breaking_fix_is_dropped_alone(tmp_path, capsys, monkeypatch):
    from torchcheck.rules.loss_accumulated_without_item import (
        LossAccumulatedWithoutItem,
    )

    original = LossAccumulatedWithoutItem.report

    def report_broken_fix(self, node, message, fix=None, **evidence):
        broken = type(fix)(fix.title, tuple(type(r)(r.node, r.text + ")") for r in fix.replacements)) if fix else None
        original(self, node, message, broken, **evidence)

    monkeypatch.setattr(LossAccumulatedWithoutItem, "report", report_broken_fix)
    path = tmp_path / "m.py"
    path.write_text(MULTI_LINE_ACCUMULATION)
    assert main(["lint", str(path), "--fix", "--unsafe-fixes", "--format", "json"]) == 1
    fixed = path.read_text()
    assert 'reduction="sum"' in fixed and "running += criterion(model(x),\n" in fixed  # the safe fix is applied
    [left] = json.loads(capsys.readouterr().out)["findings"]
    assert left["name"] == "loss-accumulated-without-item" and left["fix"] is None
    assert "unparsable" in left["fix_dropped"]
    path.write_text(MULTI_LINE_ACCUMULATION)
    main(["lint", str(path), "--fix", "--unsafe-fixes"])
    assert "note: fix not applied: Use `.item()`: it would make the file unparsable" in capsys.readouterr().out
