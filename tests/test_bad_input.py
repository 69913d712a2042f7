"""Everything a real tree contains: each case gives a clear per-file diagnostic, the rest of the
tree is still linted, exit code 2 only for errors, and nothing is written."""
import json
import os
from pathlib import Path

import pytest

from torchcheck.analysis.project import Project
from torchcheck.cli import main
from torchcheck.config import Config
from torchcheck.linter import lint_file
from torchcheck.registry import all_rules

BUGGY = b"import torch.nn as nn\ncriterion = nn.NLLLoss2d()\n"


def lint(capsys, tmp_path, *extra):
    code = main(["lint", str(tmp_path), "--format", "json", "--no-cache", "--jobs", "1", *extra])
    findings = json.loads(capsys.readouterr().out)["findings"]
    return code, {(Path(f["path"]).name, f["code"]) for f in findings}, findings


@pytest.mark.parametrize("name, data, code", [
    ("py2.py", b"print 'hello'\nexec 'x = 1'\n", "TC001"),
    ("syntax.py", b"def f(:\n    pass\n", "TC001"),
    ("conflict.py", b"<<<<<<< HEAD\nx = 1\n=======\nx = 2\n>>>>>>> branch\n", "TC001"),
    ("nulls.py", b"x = 1\x00\x00\n", "TC001"),
    ("latin.py", b"name = 'caf\xe9'\n", "TC003"),
    ("badcookie.py", b"# -*- coding: klingon -*-\nx = 1\n", "TC003"),
])
def test_broken_file_is_reported_and_the_tree_still_linted(tmp_path, capsys, name, data, code):
    (tmp_path / name).write_bytes(data)
    (tmp_path / "zz_train.py").write_bytes(BUGGY)
    exit_code, found, findings = lint(capsys, tmp_path)
    assert exit_code == 2
    assert (name, code) in found and ("zz_train.py", "TC403") in found
    assert next(f for f in findings if f["path"].endswith(name))["message"]


def test_bom_and_declared_encoding_are_read(tmp_path, capsys):
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbf" + BUGGY)
    (tmp_path / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + BUGGY)
    exit_code, found, findings = lint(capsys, tmp_path)
    assert exit_code == 1 and found == {("bom.py", "TC403"), ("latin.py", "TC403")}
    assert {(Path(f["path"]).name, f["line"], f["column"]) for f in findings} == {("bom.py", 2, 13), ("latin.py", 4, 13)}


def test_empty_file(tmp_path, capsys):
    (tmp_path / "empty.py").write_bytes(b"")
    assert lint(capsys, tmp_path)[:2] == (0, set())


def test_huge_generated_file_is_skipped_with_a_warning(tmp_path, capsys):
    line = b"TABLE_%d = [" + b", ".join(b"%d" % i for i in range(60)) + b"]  # torch\n"
    (tmp_path / "generated.py").write_bytes(b"".join(line % n for n in range(50_000)))  # ~10 MB
    (tmp_path / "train.py").write_bytes(BUGGY)
    assert (tmp_path / "generated.py").stat().st_size > 10_000_000
    exit_code, found, _ = lint(capsys, tmp_path)
    assert exit_code == 1  # a warning, not an error
    assert found == {("generated.py", "TC004"), ("train.py", "TC403")}


def test_a_module_too_large_to_hold_is_linted_in_a_process_of_its_own(tmp_path, capsys, monkeypatch):
    from torchcheck.analysis import import_graph

    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_bytes(BUGGY + (b"x = [" + b"1, " * 200 + b"]\n" if name == "b.py" else b""))
    monkeypatch.setattr(import_graph, "MAX_HELD_TOKENS_PER_MODULE", 300)
    assert [import_graph.too_large_to_hold(tmp_path / n, 4e6) for n in ("a.py", "b.py", "c.py")] == [False, True, False]
    exit_code, _, findings = lint(capsys, tmp_path)
    assert exit_code == 1 and [Path(f["path"]).name for f in findings] == ["a.py", "b.py", "c.py"]


def _die(path):
    os._exit(9)  # as if the kernel killed the process for its memory


def test_a_very_large_file_whose_process_dies_gets_an_error_and_the_rest_is_linted(tmp_path, capsys, monkeypatch):
    from torchcheck import engine
    from torchcheck.analysis import import_graph

    (tmp_path / "a.py").write_bytes(BUGGY)
    (tmp_path / "b.py").write_bytes(BUGGY + b"x = [" + b"1, " * 200 + b"]\n")
    monkeypatch.setattr(import_graph, "MAX_HELD_TOKENS_PER_MODULE", 300)
    monkeypatch.chdir(tmp_path)

    def lint_with_cache():
        code = main(["lint", ".", "--format", "json", "--jobs", "1"])
        findings = json.loads(capsys.readouterr().out)["findings"]
        return code, {(Path(f["path"]).name, f["code"]): f["message"] for f in findings}

    linting = engine._lint_in_worker
    monkeypatch.setattr(engine, "_lint_in_worker", _die)
    code, found = lint_with_cache()
    assert code == 2 and set(found) == {("a.py", "TC403"), ("b.py", "TC002")} and "died" in found["b.py", "TC002"]
    monkeypatch.setattr(engine, "_lint_in_worker", linting)
    code, found = lint_with_cache()  # the failure was not cached: this run lints the file
    assert code == 1 and set(found) == {("a.py", "TC403"), ("b.py", "TC403")}


def test_directory_symlink_loop(tmp_path, capsys):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_bytes(BUGGY)
    os.symlink(tmp_path, tmp_path / "pkg" / "loop")
    exit_code, found, findings = lint(capsys, tmp_path)
    assert exit_code == 1 and len(findings) == 1


def test_linked_file_is_linted_once(tmp_path, capsys):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_bytes(BUGGY)
    os.symlink(tmp_path / "pkg" / "m.py", tmp_path / "alias.py")
    exit_code, _, findings = lint(capsys, tmp_path)
    assert exit_code == 1 and len(findings) == 1  # found twice by the walk, linted once


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "secret.py").write_bytes(BUGGY)
    (tmp_path / "ok.py").write_bytes(BUGGY)
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "secret.py":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    exit_code, found, findings = lint(capsys, tmp_path)
    assert exit_code == 2 and found == {("secret.py", "TC003"), ("ok.py", "TC403")}
    assert "Permission denied" in next(f["message"] for f in findings if f["code"] == "TC003")


def test_file_deleted_while_linting(tmp_path):
    path = tmp_path / "gone.py"
    result = lint_file(path, Config(), list(all_rules()), Project())
    assert result.error and result.findings[0].code == "TC003"
    assert "disappeared" in result.findings[0].message or "No such file" in result.findings[0].message


def test_path_that_does_not_exist_beside_a_good_one(tmp_path, capsys):
    (tmp_path / "ok.py").write_bytes(BUGGY)
    code = main(["lint", str(tmp_path / "ok.py"), str(tmp_path / "missing.py"), "--format", "json", "--no-cache"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert code == 2 and {f["code"] for f in findings} == {"TC003", "TC403"}


def test_deeply_nested_expression(tmp_path, capsys):
    (tmp_path / "deep.py").write_text("import torch\nx = " + "(" * 200 + "1" + ")" * 200 + "\n")
    (tmp_path / "ok.py").write_bytes(BUGGY)
    exit_code, found, _ = lint(capsys, tmp_path)
    assert ("ok.py", "TC403") in found and exit_code in (1, 2)
