"""Cross-file analysis: modules analysed once per run and shared, re-exports followed, and findings
that never depend on lint order, what the run holds, process count or hash seed."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from torchcheck.analysis import project as project_module
from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.engine import project_modules
from torchcheck.linter import lint_file
from torchcheck.registry import all_rules

ROOT = Path(__file__).resolve().parent.parent
SPLIT = ROOT / "fixtures" / "static" / "split_project"
PACKAGE = ROOT / "fixtures" / "static" / "package_project"


def lint_in_order(order: list[str]) -> dict[str, list]:
    files = sorted(SPLIT.glob("*.py"))
    modules = project_modules(files, [SPLIT])
    project = Project(modules)
    names = {path: name for name, path in modules.items()}
    rules = list(all_rules())
    results = {}
    for stem in order:
        path = SPLIT / f"{stem}.py"
        results[stem] = [f.code for f in lint_file(path, Config(), rules, project, names[path]).findings]
    return results


def test_findings_do_not_depend_on_lint_order():
    forward = lint_in_order(["models", "engine", "train"])
    backward = lint_in_order(["train", "engine", "models"])
    alone = lint_in_order(["train"])
    assert forward == backward and alone["train"] == forward["train"] == ["TC101"]


def test_dropping_held_analyses_between_files_changes_no_finding(monkeypatch):
    kept = lint_in_order(["models", "engine", "train"])
    monkeypatch.setattr(project_module, "HELD_TOKENS", 1)  # every file starts from nothing
    assert lint_in_order(["models", "engine", "train"]) == kept


def test_a_module_is_parsed_once_for_all_the_files_that_ask(monkeypatch):
    parsed = []
    original = project_module.cst.parse_module
    monkeypatch.setattr(project_module.cst, "parse_module", lambda source: parsed.append(source) or original(source))
    lint_in_order(["train", "engine", "models"])
    assert len(parsed) == len(set(parsed))  # models.py and engine.py, parsed for train.py, are linted from that tree


def test_re_exports_and_two_hops_are_followed():
    """`from vision import Classifier`, re-exported by vision/__init__.py, whose head is in a third file."""
    files = sorted(PACKAGE.rglob("*.py"))
    project = Project(project_modules(files, [PACKAGE]))
    train = PACKAGE / "train.py"
    findings = lint_file(train, Config(), list(all_rules()), project, "train").findings
    assert [(f.code, f.line) for f in findings] == [("TC101", 15)]
    assert [Path(r.path).name for r in findings[0].related][:2] == ["heads.py", "models.py"]
    assert project.dependencies(project._analyses["train"]).modules.keys() >= {"vision", "vision.models", "vision.heads"}


def test_findings_are_the_same_under_any_hash_seed_and_process_count():
    assert len(list((ROOT / "fixtures").rglob("*.py"))) >= 24  # enough files for --jobs 2 to use processes
    outputs = set()
    for seed, jobs in (("1", "1"), ("2", "2"), ("3", "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-m", "torchcheck", "lint", "fixtures", "--format", "json",
                              "--no-cache", "--jobs", jobs], cwd=ROOT, env=env, capture_output=True, text=True)
        assert run.returncode == 1, run.stderr
        outputs.add(json.dumps(json.loads(run.stdout)["findings"], sort_keys=True))
    assert len(outputs) == 1


CORE = """import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=1)
"""

USER = """import torch
import torch.nn as nn
from core import Net

model = Net()
loss = nn.CrossEntropyLoss()(model(torch.randn(4, 8)), torch.tensor([0, 1, 0, 1]))
loss.backward()
# {padding}
"""


def test_modules_many_files_ask_about_stay_held_across_drops(tmp_path, monkeypatch):
    (tmp_path / "core.py").write_text(CORE)
    users = [tmp_path / f"user{i}.py" for i in range(9)]
    for user in users:
        user.write_text(USER.format(padding="padding " * 60))
    modules = project_modules([tmp_path / "core.py", *users], [tmp_path])
    names = {path: name for name, path in modules.items()}
    core_tokens, user_tokens = (project_module.count_tokens(p.read_bytes()) for p in (tmp_path / "core.py", users[0]))
    parsed = []
    original = project_module.cst.parse_module
    monkeypatch.setattr(project_module.cst, "parse_module", lambda source: parsed.append(source) or original(source))

    def lint_all() -> list:
        project = Project(modules)
        return [[f.code for f in lint_file(u, Config(), list(all_rules()), project, names[u]).findings] for u in users]

    everything_held = lint_all()
    monkeypatch.setattr(project_module, "HELD_TOKENS", core_tokens + 3 * user_tokens + 1)  # a drop every 3 files
    parsed.clear()
    assert lint_all() == everything_held == [["TC101"]] * 9
    core_parses = [source for source in parsed if source.startswith(CORE.encode().split(b"\n\n")[0])]
    assert len(core_parses) == 1  # kept at each drop: every file asked about it (in pieces: its skeleton)


def test_a_module_too_large_to_analyse_answers_no_other_file(monkeypatch):
    monkeypatch.setattr(project_module, "MAX_HELD_TOKENS_PER_MODULE", 1)  # every module counts as generated data
    assert lint_in_order(["train"]) == {"train": []}  # the softmax TC101 needs is in models.py


@given(st.binary(max_size=200) | st.text(alphabet=" \t\n_aZ9.(é#", max_size=200).map(str.encode))
def test_tokens_are_counted_as_the_pattern_counts_them(source):
    assert project_module.count_tokens(source) == len(re.findall(rb"\w+|[^\w\s]", source))


def test_relative_imports_in_a_package_init_name_its_own_submodules(tmp_path):
    import libcst as cst

    from torchcheck.analysis.import_graph import ImportGraph
    from torchcheck.analysis.imports import ImportTable

    source = "from .base import Task\nfrom ..utils import helper\n"
    init = ImportTable(cst.parse_module(source), "pkg.tasks", is_package=True)
    assert (init.aliases["Task"], init.aliases["helper"]) == ("pkg.tasks.base.Task", "pkg.utils.helper")
    module = ImportTable(cst.parse_module(source), "pkg.tasks.run")
    assert (module.aliases["Task"], module.aliases["helper"]) == ("pkg.tasks.base.Task", "pkg.utils.helper")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text(source)
    graph = ImportGraph({"pkg.tasks": tmp_path / "tasks" / "__init__.py"})
    assert {"pkg.tasks.base.Task", "pkg.utils.helper"} <= graph.outline("pkg.tasks").imported
