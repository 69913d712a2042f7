"""Findings name their evidence: `related` locations in JSON, SARIF relatedLocations and codeFlows,
notes in the text output, the same from the cache."""
import json
import shutil
from pathlib import Path

import libcst as cst
import pytest

from torchcheck.cli import main
from torchcheck.rule import Rule
from torchcheck.testing import lint_snippet

SPLIT_PROJECT = Path(__file__).resolve().parent.parent / "fixtures" / "static" / "split_project"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The split project (a model in models.py, its training in train.py), as the working directory."""
    shutil.copytree(SPLIT_PROJECT, tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    return tmp_path / "project"


def lint(capsys, *args) -> str:
    main(["lint", ".", "--no-cache", *args])
    return capsys.readouterr().out


def test_json_related_leads_from_the_softmax_in_the_other_file(project, capsys):
    findings = json.loads(lint(capsys, "--format", "json"))["findings"]
    [finding] = [f for f in findings if f["name"] == "softmax-before-cross-entropy"]
    assert (finding["path"], finding["line"]) == ("train.py", 18)
    assert finding["related"] == [
        {"message": "log-softmax applied here", "path": "models.py", "line": 10, "column": 69, "end_line": 10,
         "end_column": 89},
        {"message": "returned by `Classifier.forward`", "path": "models.py", "line": 12, "column": 9, "end_line": 12,
         "end_column": 16},
        {"message": "`criterion` (CrossEntropyLoss) created here", "path": "train.py", "line": 11, "column": 17,
         "end_line": 11, "end_column": 38},
    ]


def test_json_related_is_always_present(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("from torch.autograd import Variable\nx = Variable(1)\n")
    [finding] = json.loads(lint(capsys, "--format", "json"))["findings"]
    assert finding["related"] == []


def test_sarif_has_related_locations_and_a_code_flow(project, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    sarif = json.loads(lint(capsys, "--format", "sarif"))
    jsonschema.validate(sarif, json.loads((Path(__file__).parent / "sarif_subset.schema.json").read_text()))
    [result] = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "TC101"]
    related = result["relatedLocations"]
    assert [r["id"] for r in related] == [1, 2, 3]
    assert related[0]["message"]["text"] == "log-softmax applied here"
    assert related[0]["physicalLocation"]["artifactLocation"]["uri"] == "models.py"
    assert related[0]["physicalLocation"]["region"]["startLine"] == 10
    steps = result["codeFlows"][0]["threadFlows"][0]["locations"]
    uris = [(s["location"]["physicalLocation"]["artifactLocation"]["uri"],
             s["location"]["physicalLocation"]["region"]["startLine"]) for s in steps]
    assert uris == [("models.py", 10), ("models.py", 12), ("train.py", 11), ("train.py", 18)]
    assert steps[-1]["location"]["physicalLocation"] == result["locations"][0]["physicalLocation"]


def test_text_notes_name_each_related_location(project, capsys):
    out = lint(capsys)
    assert " = note: log-softmax applied here --> models.py:10:69\n" in out
    assert "   | self.classifier = nn.Sequential(nn.Linear(64, num_classes), nn.LogSoftmax(dim=1))\n" in out
    assert " = note: returned by `Classifier.forward` --> models.py:12:9\n" in out
    assert " = note: `criterion` (CrossEntropyLoss) created here --> train.py:11:17\n" in out


def test_cache_keeps_related(project, capsys):
    main(["lint", ".", "--format", "json"])
    cold = json.loads(capsys.readouterr().out)["findings"]
    main(["lint", ".", "--format", "json"])
    warm = json.loads(capsys.readouterr().out)["findings"]
    assert warm == cold and any(f["related"] for f in warm)


def test_evidence_in_the_file_itself():
    [finding] = lint_snippet("""
        import torch.nn as nn
        import torch.nn.functional as F
        criterion = nn.CrossEntropyLoss()
        def step(model, x, y):
            probs = F.softmax(model(x), dim=1)
            print(probs.max(1))
            return criterion(probs, y)
        """)
    assert [(r.message, r.line, r.column) for r in finding.related] == [
        ("softmax applied here", 5, 13),
        ("`probs` assigned here", 5, 5),
        ("`criterion` (CrossEntropyLoss) created here", 3, 13),
    ]


def test_evidence_at_the_finding_itself_is_left_out():
    [finding] = lint_snippet("""
        import torch.nn.functional as F
        def step(model, x, y):
            return F.cross_entropy(F.softmax(model(x), dim=1), y)
        """)
    assert finding.related == ()


class _CitesEvidence(Rule):
    code = "TC999"
    name = "cites-evidence"
    summary = "A call, citing a node of no linted module and the call's argument"

    def visit_Call(self, node: cst.Call) -> None:
        self.report(node, "a call", related=[(cst.parse_expression("elsewhere"), "in no module"),
                                             (node.args[0].value, "its argument")])


def test_evidence_that_cannot_be_placed_is_left_out():
    [finding] = lint_snippet("print(x)\n", rules=[_CitesEvidence])
    assert [(r.message, r.path, r.line, r.column) for r in finding.related] == [("its argument", "snippet.py", 1, 7)]


def test_evaluation_finding_cites_the_call_in_the_other_file(project, capsys):
    train = project / "train.py"
    train.write_text(train.read_text().replace("        model.eval()\n", "").replace("with torch.no_grad():", "if True:"))
    findings = json.loads(lint(capsys, "--format", "json"))["findings"]
    [finding] = [f for f in findings if f["name"] == "eval-mode-missing"]
    assert finding["path"] == "engine.py"
    assert [(r["message"], r["path"], r["line"]) for r in finding["related"]] == [
        ("`evaluate` called here", "train.py", 22),
        ("evaluation function `evaluate`", "engine.py", 4),
    ]
