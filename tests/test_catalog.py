"""Meta-tests: every rule is complete and documented, codes and names are unique, and the
generated catalog (rules/, README table) matches the code."""
import re

import pytest

from torchcheck.catalog import catalog_files, fix_table, rule_table
from torchcheck.registry import all_rules, catalog, resolve_rule

SECTIONS = ["What it does", "Why is this bad?", "Example", "Use instead", "Fix safety"]


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.code)
def test_rule_is_complete(rule):
    assert re.fullmatch(r"TC[1-9]\d\d", rule.code)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
    assert rule.summary and not rule.summary.endswith(".")
    sections = rule.doc_sections()
    for section in SECTIONS:
        assert sections.get(section), f"{rule.name}: docstring lacks '## {section}'"
    assert rule.VALID and rule.INVALID, f"{rule.name} needs valid and invalid cases"
    assert (rule.fix_safety is None) == (not rule.fix_reason), f"{rule.name}: fix safety needs its reason"


def test_codes_and_names_are_unique():
    entries = catalog()
    assert len({r.code for r in entries}) == len(entries)
    assert len({r.name for r in entries}) == len(entries)


def test_codes_grouped_by_hundreds():
    groups = {"TC0": "engine", "TC1": "loss", "TC2": "loop", "TC3": "mode", "TC4": "deprecated", "TC5": "api",
              "TC6": "security"}
    for rule in catalog():
        assert rule.code[:3] in groups


def test_resolve_by_code_and_name():
    assert resolve_rule("TC101").name == "softmax-before-cross-entropy"
    assert resolve_rule("tc101").code == "TC101"
    assert resolve_rule("missing-zero-grad").code == "TC201"
    assert resolve_rule("nope") is None


def test_issue_rule_names_exist():
    names = {r.name for r in catalog()}
    for name in ["softmax-before-cross-entropy", "nll-loss-without-log-softmax", "sigmoid-before-bce-with-logits",
                 "bce-on-logits", "missing-zero-grad", "eval-mode-missing", "no-grad-missing",
                 "functional-dropout-training", "target-requires-grad", "loss-accumulated-without-item",
                 "deprecated-loss-reduction-args", "torchvision-pretrained-deprecated", "deprecated-nll-loss-2d",
                 "deprecated-variable", "deprecated-functional-activation", "softmax-implicit-dim",
                 "forward-called-directly", "index-select-non-long-index", "interpolate-3d-input"]:
        assert name in names


def test_rules_folder_is_current(root):
    folder = root / "rules"
    wanted = catalog_files()
    present = {p.name for p in folder.glob("*.md")}
    assert present == set(wanted), "rules/ is stale: run `python -m torchcheck.catalog`"
    for name, text in wanted.items():
        assert (folder / name).read_text(encoding="utf-8") == text, f"rules/{name} is stale: run `python -m torchcheck.catalog`"


def test_readme_rule_table_is_current(root):
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert rule_table() in readme, "README rule table is stale: paste `python -c 'from torchcheck.catalog import rule_table; print(rule_table())'`"
    assert fix_table() in readme, "README fix table is stale: paste `python -c 'from torchcheck.catalog import fix_table; print(fix_table())'`"


def test_torchvision_weights_table_matches_installed_torchvision():
    models = pytest.importorskip("torchvision.models")
    from torchcheck.analysis.torchvision_weights import BUILDER_WEIGHTS

    installed = {name: models.get_model_weights(name).__name__ for name in models.list_models()}
    assert {k: v[1] for k, v in BUILDER_WEIGHTS.items()} == installed
