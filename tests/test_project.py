"""Cross-file analysis: one hop, bounded memory, and findings that never depend on lint order,
process count or hash seed."""
import json
import os
import subprocess
import sys
from pathlib import Path

from torchcheck.analysis import project as project_module
from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.engine import lint_file, project_modules
from torchcheck.registry import all_rules

ROOT = Path(__file__).resolve().parent.parent
SPLIT = ROOT / "fixtures" / "static" / "split_project"


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


def test_neighbours_over_the_memory_budget_are_not_analysed(monkeypatch):
    train_tokens = project_module.count_tokens((SPLIT / "train.py").read_bytes())
    monkeypatch.setattr(project_module, "TREE_TOKENS", train_tokens + 10)
    assert lint_in_order(["train"]) == {"train": []}  # models.py unknown: nothing reported on a guess


def test_neighbours_are_one_hop():
    modules = project_modules(sorted(SPLIT.glob("*.py")), [SPLIT])
    project = Project(modules)
    assert project.neighbours("train") == {"models", "engine"}
    assert project.neighbours("models") == {"train"}


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
