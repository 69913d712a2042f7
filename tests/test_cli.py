"""The command line: formats, exit codes, selection, config, suppression, bad files."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchcheck.cli import main

BUGGY = """\
import torch.nn as nn
import torch.nn.functional as F

criterion = nn.CrossEntropyLoss(size_average=False)


def step(model, x, y):
    return criterion(F.softmax(model(x), dim=1), y)
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output_like_ruff(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", BUGGY)
    code, out, _ = run(capsys, "lint", "train.py")
    assert code == 1
    assert out == textwrap.dedent("""\
        TC401 [*] `size_average` on `nn.CrossEntropyLoss` is deprecated and overrides `reduction`; use `reduction=` instead
         --> train.py:4:33
          |
        4 | criterion = nn.CrossEntropyLoss(size_average=False)
          |                                 ^^^^^^^^^^^^^^^^^^
          |
        help: Use `reduction="sum"`

        TC101 Softmax output (from `F.softmax(model(x), dim=1)`) is passed to `criterion`, which applies log-softmax itself; pass the raw logits
         --> train.py:8:22
          |
        8 |     return criterion(F.softmax(model(x), dim=1), y)
          |                      ^^^^^^^^^^^^^^^^^^^^^^^^^^
          |
         = note: `criterion` (CrossEntropyLoss) created here --> train.py:4:13
           | criterion = nn.CrossEntropyLoss(size_average=False)
        help (unsafe fix): Pass the logits to `criterion` without softmax

        Found 2 findings in 1 file.
        [*] 1 fixable with the `--fix` option.
        1 more fixable with `--fix --unsafe-fixes`.
        """)


def test_clean_exit_zero(tmp_path, capsys):
    write(tmp_path, "ok.py", "import torch\nx = torch.ones(3)\n")
    code, out, _ = run(capsys, "lint", tmp_path)
    assert code == 0 and "All checks passed!" in out


def test_exit_zero_flag(tmp_path, capsys):
    write(tmp_path, "train.py", BUGGY)
    assert run(capsys, "lint", tmp_path, "--exit-zero")[0] == 0


def test_json_format_is_stable(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", BUGGY)
    code, out, _ = run(capsys, "lint", "train.py", "--format", "json")
    data = json.loads(out)
    assert code == 1
    assert set(data) == {"version", "findings", "summary"}
    first = data["findings"][0]
    assert {"code", "name", "message", "path", "line", "column", "end_line", "end_column", "severity", "fix"} <= set(first)
    assert first["code"] == "TC401" and first["name"] == "deprecated-loss-reduction-args"
    assert first["fix"]["safety"] == "safe" and first["fix"]["edits"][0]["content"].startswith("nn.CrossEntropyLoss(")
    assert data["summary"]["findings"] == 2 and data["summary"]["by_code"] == {"TC101": 1, "TC401": 1}
    assert [(f["line"], f["column"]) for f in data["findings"]] == sorted((f["line"], f["column"]) for f in data["findings"])


def test_sarif_validates_against_schema(tmp_path, capsys, monkeypatch):
    jsonschema = pytest.importorskip("jsonschema")
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", BUGGY)
    run(capsys, "lint", "train.py", "--format", "sarif", "--output", "out.sarif")
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    schema = json.loads((Path(__file__).parent / "sarif_subset.schema.json").read_text())
    jsonschema.validate(sarif, schema)
    run_ = sarif["runs"][0]
    assert [r["ruleId"] for r in run_["results"]] == ["TC401", "TC101"]
    rules = run_["tool"]["driver"]["rules"]
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


def test_github_annotations(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", BUGGY)
    _, out, _ = run(capsys, "lint", "train.py", "--format", "github")
    lines = out.splitlines()
    assert lines[0].startswith("::warning file=train.py,line=4,col=33,endLine=4,endColumn=51,title=TC401 deprecated-loss-reduction-args::TC401 ")
    assert lines[1].startswith("::error file=train.py,line=8,col=22,")


def test_concise_and_output_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "train.py", BUGGY)
    code, out, _ = run(capsys, "lint", "train.py", "--format", "concise", "--output", "report.txt")
    assert code == 1 and out == ""
    report = (tmp_path / "report.txt").read_text()
    assert report.startswith("train.py:4:33: TC401 [*] ")
    assert "\x1b[" not in report


@pytest.mark.parametrize("selector, expected", [
    ("TC1", ["TC101"]), ("TC401", ["TC401"]), ("softmax-before-cross-entropy", ["TC101"]), ("ALL", ["TC101", "TC401"]),
])
def test_select(tmp_path, capsys, selector, expected):
    write(tmp_path, "train.py", BUGGY)
    _, out, _ = run(capsys, "lint", tmp_path, "--select", selector, "--format", "json")
    assert sorted({f["code"] for f in json.loads(out)["findings"]}) == expected


def test_ignore_and_extend_select(tmp_path, capsys):
    write(tmp_path, "train.py", BUGGY)
    _, out, _ = run(capsys, "lint", tmp_path, "--ignore", "deprecated-loss-reduction-args", "--format", "json")
    assert [f["code"] for f in json.loads(out)["findings"]] == ["TC101"]
    _, out, _ = run(capsys, "lint", tmp_path, "--select", "TC4", "--extend-select", "TC101", "--format", "json")
    assert sorted(f["code"] for f in json.loads(out)["findings"]) == ["TC101", "TC401"]


def test_unknown_selector_is_usage_error(tmp_path, capsys):
    write(tmp_path, "train.py", BUGGY)
    code, _, err = run(capsys, "lint", tmp_path, "--select", "TC999")
    assert code == 2 and "unknown rule selector `TC999`" in err


def test_pyproject_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pyproject.toml", """
        [tool.torchcheck]
        ignore = ["TC401"]
        exclude = ["generated"]
        per-file-ignores = { "legacy/*" = ["softmax-before-cross-entropy"] }
    """)
    write(tmp_path, "train.py", BUGGY)
    write(tmp_path, "legacy/old.py", BUGGY)
    write(tmp_path, "generated/gen.py", BUGGY)
    _, out, _ = run(capsys, "lint", ".", "--format", "json")
    findings = json.loads(out)["findings"]
    assert [(f["path"], f["code"]) for f in findings] == [("train.py", "TC101")]
    # the command line overrides the config's selection
    _, out, _ = run(capsys, "lint", ".", "--select", "TC4", "--format", "json")
    assert {f["code"] for f in json.loads(out)["findings"]} == set()  # TC401 still ignored by config
    _, out, _ = run(capsys, "lint", "generated/gen.py", "--format", "json")  # explicit files are linted
    assert json.loads(out)["findings"]


def test_target_version_turns_off_rules_for_old_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pyproject.toml", '[tool.torchcheck]\ntarget-version = "1.10"\n')
    write(tmp_path, "m.py", "import torchvision.models as models\nm = models.resnet18(pretrained=True)\n")
    _, out, _ = run(capsys, "lint", "m.py", "--format", "json")
    assert json.loads(out)["findings"] == []


def test_rule_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pyproject.toml", '[tool.torchcheck.rules.no-grad-missing]\neval-function-pattern = "^check_"\n')
    write(tmp_path, "m.py", """
        def check_model(model, loader):
            model.eval()
            for x in loader:
                model(x)
        def evaluate(model, loader):  # no longer evaluation by name, and no eval() call to show it is
            for x in loader:
                model(x)
    """)
    _, out, _ = run(capsys, "lint", "m.py", "--select", "TC302", "--format", "json")
    assert [f["line"] for f in json.loads(out)["findings"]] == [5]


@pytest.mark.parametrize("config, key", [
    ('[tool.torchcheck]\nselct = ["TC1"]\n', "selct"),
    ('[tool.torchcheck]\nselect = "TC1\n', "invalid TOML"),
    ('[tool.torchcheck]\nignore = [1]\n', "ignore"),
    ('[tool.torchcheck.rules.missing-zero-grad]\nfoo = 1\n', "rules.missing-zero-grad.foo"),
    ('[tool.torchcheck]\ntarget-version = "two"\n', "target-version"),
])
def test_config_errors_name_the_key(tmp_path, capsys, monkeypatch, config, key):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pyproject.toml", config)
    write(tmp_path, "m.py", BUGGY)
    code, out, err = run(capsys, "lint", "m.py")
    assert code == 2 and key in err and out == ""


@pytest.mark.parametrize("comment, suppressed", [
    ("# noqa: TC101", True), ("# noqa", True), ("# torchcheck: ignore[TC101]", True),
    ("# torchcheck: ignore[softmax-before-cross-entropy]", True), ("# torchcheck: ignore", True),
    ("# noqa: TC1", True), ("# noqa: TC401", False), ("# a comment", False),
])
def test_suppression_comments(tmp_path, capsys, comment, suppressed):
    write(tmp_path, "m.py", f"""
        import torch.nn.functional as F
        def step(model, x, y):
            return F.cross_entropy(F.softmax(model(x), dim=1), y)  {comment}
    """)
    _, out, _ = run(capsys, "lint", tmp_path, "--format", "json")
    assert (json.loads(out)["findings"] == []) == suppressed


def test_suppression_on_first_line_of_statement(tmp_path, capsys):
    write(tmp_path, "m.py", """
        import torch.nn.functional as F
        def step(model, x, y):
            loss = F.cross_entropy(  # noqa: TC101
                F.softmax(model(x), dim=1),
                y,
            )
            return loss
    """)
    _, out, _ = run(capsys, "lint", tmp_path, "--format", "json")
    assert json.loads(out)["findings"] == []


def test_syntax_error_is_a_finding_and_others_still_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "a_broken.py", "print 'python 2'\n")
    write(tmp_path, "b_train.py", BUGGY)
    code, out, _ = run(capsys, "lint", ".", "--format", "json")
    findings = json.loads(out)["findings"]
    assert code == 2
    assert findings[0]["path"] == "a_broken.py" and findings[0]["code"] == "TC001" and findings[0]["line"] == 1
    assert {f["code"] for f in findings[1:]} == {"TC101", "TC401"}


def test_missing_path(tmp_path, capsys):
    code, out, _ = run(capsys, "lint", tmp_path / "nope.py", "--format", "json")
    assert code == 2 and json.loads(out)["findings"][0]["code"] == "TC003"


def test_crashing_rule_is_reported_and_others_run(tmp_path, capsys, monkeypatch):
    from torchcheck.rules.softmax_before_cross_entropy import SoftmaxBeforeCrossEntropy

    def visit_Call(self, node):
        raise RuntimeError("boom")

    monkeypatch.setattr(SoftmaxBeforeCrossEntropy, "visit_Call", visit_Call)
    write(tmp_path, "m.py", BUGGY)
    code, out, _ = run(capsys, "lint", tmp_path, "--format", "json")
    findings = json.loads(out)["findings"]
    assert code == 2
    assert {f["code"] for f in findings} == {"TC002", "TC401"}
    assert "softmax-before-cross-entropy crashed" in next(f for f in findings if f["code"] == "TC002")["message"]


def test_directory_walk_skips_hidden_and_venv(tmp_path, capsys):
    for folder in (".hidden", "venv", ".venv", "build", "node_modules", "__pycache__"):
        write(tmp_path, f"{folder}/m.py", BUGGY)
    write(tmp_path, "pkg/m.py", BUGGY)
    _, out, _ = run(capsys, "lint", tmp_path, "--format", "json")
    assert {Path(f["path"]).parent.name for f in json.loads(out)["findings"]} == {"pkg"}


def test_rules_and_explain(capsys):
    code, out, _ = run(capsys, "rules", "--format", "json")
    data = json.loads(out)
    assert code == 0 and any(r["name"] == "missing-zero-grad" and r["runtime"] for r in data)
    code, out, _ = run(capsys, "explain", "TC201")
    assert code == 0 and "# TC201 `missing-zero-grad`" in out and "## Why is this bad?" in out
    code, out, _ = run(capsys, "explain", "softmax-before-cross-entropy")
    assert code == 0 and "TC101" in out
    assert run(capsys, "explain", "nope")[0] == 2


def test_statistics(tmp_path, capsys):
    write(tmp_path, "m.py", BUGGY)
    code, out, _ = run(capsys, "lint", tmp_path, "--statistics")
    assert code == 1
    assert [line.split() for line in out.splitlines()] == [
        ["1", "TC101", "softmax-before-cross-entropy"], ["1", "TC401", "[*]", "deprecated-loss-reduction-args"]]


def test_python_dash_m_and_no_torch(tmp_path):
    write(tmp_path, "m.py", BUGGY)
    blocker = tmp_path / "block" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), str(Path(__file__).parent.parent)])}
    proc = subprocess.run([sys.executable, "-m", "torchcheck", "lint", str(tmp_path / "m.py"), "--format", "concise"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "TC101" in proc.stdout and "TC401" in proc.stdout


@pytest.mark.parametrize("count", [0, 1, 3])
def test_pre_commit_hook_with_zero_one_or_many_files(tmp_path, capsys, monkeypatch, count, root):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "unstaged_buggy.py", BUGGY)  # must not be linted: pre-commit names the files
    files = [write(tmp_path, f"staged{i}.py", BUGGY if i == 0 else "x = 1\n").name for i in range(count)]
    entry = _hook_entries(root)["torchcheck"]
    assert entry[:2] == ["torchcheck", "lint"]
    code, out, _ = run(capsys, *entry[1:], "--format", "json", *files)
    findings = json.loads(out)["findings"]
    assert {f["path"] for f in findings} == ({"staged0.py"} if count else set())
    assert code == (1 if count else 0)


def _hook_entries(root):
    entries = {}
    current = None
    for line in (root / ".pre-commit-hooks.yaml").read_text().splitlines():
        if line.startswith("- id: "):
            current = line[6:].strip()
        elif line.strip().startswith("entry: ") and current:
            entries[current] = line.split("entry: ", 1)[1].split()
    return entries
