"""The result cache: a warm run answers from the cache, a change re-lints the file and the files
whose findings read it, results are identical either way."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from torchcheck.cli import main

STATIC = Path(__file__).resolve().parent.parent / "fixtures" / "static"


def lint_json(capsys, *args):
    main(["lint", *map(str, args), "--format", "json", "--jobs", "1"])
    return json.loads(capsys.readouterr().out)["findings"]


def working_copy(tmp_path, monkeypatch, fixture: str = "split_project") -> Path:
    """A copy of a fixture tree to lint and edit, as the working folder."""
    copy = tmp_path / "tree"
    shutil.copytree(STATIC / fixture, copy)
    monkeypatch.chdir(copy)
    return copy


def test_warm_run_gives_the_same_findings(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch, ".")
    cold = lint_json(capsys, ".")
    assert (copy / ".torchcheck_cache").is_dir()
    from torchcheck import linter

    calls = []
    original = linter.lint_file
    monkeypatch.setattr(linter, "lint_file", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    warm = lint_json(capsys, ".")
    assert warm == cold and calls == []


def test_a_warm_run_reads_the_import_graph_from_the_cache(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    cold = lint_json(capsys, ".")
    from torchcheck.analysis.import_graph import ImportGraph

    read = []
    original = ImportGraph._imported_names
    monkeypatch.setattr(ImportGraph, "_imported_names", staticmethod(lambda *a: read.append(a[0]) or original(*a)))
    assert lint_json(capsys, ".") == cold and read == []
    models = copy / "models.py"
    models.write_text(models.read_text() + "\nimport os\n")
    lint_json(capsys, ".")
    assert read == ["models"]  # only the changed file's imports are read again


def test_a_warm_run_reads_no_file_whose_size_and_times_are_known(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    from torchcheck import cache

    monkeypatch.setattr(cache, "SETTLING_NS", 0)  # the copy's times are trusted at once
    cold = lint_json(capsys, ".")
    read = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or original(self))
    shown = {Path(f["path"]).name for f in cold}  # read for the report's excerpts
    assert lint_json(capsys, ".") == cold and {name for name in read if name.endswith(".py")} == shown
    models = copy / "models.py"
    text = models.read_text()
    models.write_text(text.replace("nn.LogSoftmax(dim=1)", "nn.Identity()       "))  # same size
    assert models.stat().st_size == len(text.encode())
    assert lint_json(capsys, ".") != cold and "models.py" in read


EVALUATION = """
import torch

SPLIT = "val"


def validate(model, loader):
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct
"""
CALLER = """
from torch import nn

from evaluation import SPLIT{imported}


def main(loader):
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
    print(SPLIT{called})
"""


def test_an_importer_that_starts_calling_a_function_relints_the_function(tmp_path, capsys, monkeypatch):
    """`validate` has no callers in the tree (a library API: its callers decide the mode), until an
    importer that never mentioned it calls it with a model in training mode."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evaluation.py").write_text(EVALUATION)
    (tmp_path / "train.py").write_text(CALLER.format(imported="", called=""))
    (tmp_path / "other.py").write_text(CALLER.format(imported="", called=""))
    assert lint_json(capsys, ".") == []
    from torchcheck import linter

    relinted = []
    original = linter.lint_file
    monkeypatch.setattr(linter, "lint_file", lambda *a, **k: relinted.append(a[0].name) or original(*a, **k))
    (tmp_path / "other.py").write_text(CALLER.format(imported="", called=", 1"))  # still never mentions it
    assert lint_json(capsys, ".") == [] and relinted == ["other.py"]
    (tmp_path / "train.py").write_text(CALLER.format(imported=", validate", called=", validate(model, loader)"))
    cached = lint_json(capsys, ".")
    assert [f["code"] for f in cached] == ["TC301"] and cached == lint_json(capsys, ".", "--no-cache")


LOOPS = """
import torch

SPLIT = "test"


def score(model, loader):
    correct = 0
    for x, y in loader:
        correct += (model(x).argmax(1) == y).sum().item()
    return correct
"""
SCORER = """
from torch import nn

from loops import SPLIT{imported}


def main(loader):
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
    {body}
"""


def test_an_importer_that_puts_a_model_in_eval_mode_for_a_loop_relints_it(tmp_path, capsys, monkeypatch):
    """`loops.py` sets no mode and no file calls `score`: its loop is not evaluation. Then an importer
    that already imported the module calls `score` after `model.eval()`: now it is."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loops.py").write_text(LOOPS)
    (tmp_path / "train.py").write_text(SCORER.format(imported="", body="print(SPLIT)"))
    assert lint_json(capsys, ".") == []
    (tmp_path / "train.py").write_text(SCORER.format(imported=", score", body="model.eval()\n    print(score(model, loader))"))
    cached = lint_json(capsys, ".")
    assert [(f["code"], f["path"]) for f in cached] == [("TC302", "loops.py")]
    assert cached == lint_json(capsys, ".", "--no-cache")


def test_an_importer_edit_a_search_does_not_see_rewrites_no_other_entry(tmp_path, capsys, monkeypatch):
    """The search for `validate`'s callers is kept once for the tree. An importer's edit that neither
    mentions `validate` nor was found mentioning it does not search again; one that changes what the
    importer imports searches again, once, and the entries that relied on the search stay as they were."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evaluation.py").write_text(EVALUATION)
    (tmp_path / "train.py").write_text(CALLER.format(imported="", called=""))
    lint_json(capsys, ".")
    entries = {path: path.stat().st_mtime_ns for path in (tmp_path / ".torchcheck_cache").glob("*/??/*.json")}
    from torchcheck.analysis.import_graph import ImportGraph

    searched = []
    original = ImportGraph.importers_mentioning
    monkeypatch.setattr(ImportGraph, "importers_mentioning", lambda self, *a: searched.append(a) or original(self, *a))
    (tmp_path / "train.py").write_text(CALLER.format(imported="", called=", 1"))
    assert lint_json(capsys, ".") == [] and searched == []
    (tmp_path / "train.py").write_text(CALLER.format(imported="\nimport os", called=", 1"))
    assert lint_json(capsys, ".") == [] and searched == [("evaluation", "validate")]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in entries.items())  # train.py's are new ones
    assert lint_json(capsys, ".") == [] and len(searched) == 1


@pytest.mark.parametrize("stats", ["{not json", '{"x": 3}', '[1, 2]', "models.py with a number for its hash"])
def test_a_damaged_stats_file_only_costs_reading_the_files(tmp_path, capsys, monkeypatch, stats):
    copy = working_copy(tmp_path, monkeypatch)
    from torchcheck import cache

    monkeypatch.setattr(cache, "SETTLING_NS", 0)
    cold = lint_json(capsys, ".")
    files = list((copy / ".torchcheck_cache").rglob("stats.json"))
    assert files
    if stats.startswith("models.py"):
        status = (copy / "models.py").resolve().stat()
        stats = json.dumps({str((copy / "models.py").resolve()): [status.st_size, status.st_mtime_ns, status.st_ctime_ns, 5]})
    files[0].write_text(stats)
    assert lint_json(capsys, ".") == cold


def test_a_change_relints_the_file_and_its_importers(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    assert [f["code"] for f in lint_json(capsys, ".")] == ["TC101"]
    models = copy / "models.py"
    models.write_text(models.read_text().replace("nn.LogSoftmax(dim=1)", "nn.Identity()"))
    from torchcheck import linter

    calls = []
    original = linter.lint_file
    monkeypatch.setattr(linter, "lint_file", lambda *a, **k: calls.append(a[0].name) or original(*a, **k))
    assert lint_json(capsys, ".") == []  # train.py's finding came from models.py: it was re-linted
    # engine.py's evaluate() is judged by what train.py passes it, a models.py model: it read models.py too
    assert sorted(calls) == ["engine.py", "models.py", "train.py"]


def test_a_change_that_nothing_reads_relints_only_that_file(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    (copy / "unrelated.py").write_text("import torch\n\nx = torch.zeros(3)\n")
    lint_json(capsys, ".")
    (copy / "unrelated.py").write_text("import torch\n\nx = torch.ones(3)\n")
    from torchcheck import linter

    calls = []
    original = linter.lint_file
    monkeypatch.setattr(linter, "lint_file", lambda *a, **k: calls.append(a[0].name) or original(*a, **k))
    lint_json(capsys, ".")
    assert calls == ["unrelated.py"]


def _relinted(monkeypatch) -> list[str]:
    from torchcheck import linter

    calls: list[str] = []
    original = linter.lint_file
    monkeypatch.setattr(linter, "lint_file", lambda *a, **k: calls.append(a[0].name) or original(*a, **k))
    return calls


HELPER = "\n\ndef unused_helper(n):\n    return n + 1\n"


def test_an_edit_to_a_part_no_file_read_relints_only_that_file(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    models = copy / "models.py"
    models.write_text(models.read_text() + HELPER)
    cold = lint_json(capsys, ".")
    models.write_text(models.read_text().replace("return n + 1", "n += 1\n    return n") + "# the end\n")
    calls = _relinted(monkeypatch)
    assert lint_json(capsys, ".") == cold and calls == ["models.py"]
    calls.clear()
    assert lint_json(capsys, ".") == cold and calls == []  # train.py's entry now names the new content


def test_an_edit_that_moves_the_evidence_shown_relints_the_files_showing_it(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    lint_json(capsys, ".")
    models = copy / "models.py"
    models.write_text("# a comment moves every line below it\n" + models.read_text())
    calls = _relinted(monkeypatch)
    warm = lint_json(capsys, ".")
    assert "train.py" in calls
    assert warm == lint_json(capsys, ".", "--no-cache")
    assert [r["line"] for r in warm[0]["related"] if r["path"] == "models.py"] == [11, 13]


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("nn.ReLU()", "nn.ReLU(), nn.Dropout()"),  # in a part train.py read
    lambda text: text.replace("import torch.nn as nn", "import torch.nn as nn\nimport torch.nn as tnn"),
    lambda text: text.replace("class Classifier", "class Renamed").replace("def unused_helper", "def Classifier"),
    lambda text: text.replace("    def forward(self, x):", "    # dropout\n    def forward(self, x):"),
    lambda text: text.replace(HELPER, "") + "\nClassifier = nn.Identity\n",
], ids=["layer", "import", "renamed", "comment-read", "rebound"])
def test_a_cached_run_after_any_edit_gives_the_findings_of_an_uncached_one(tmp_path, capsys, monkeypatch, edit):
    copy = working_copy(tmp_path, monkeypatch)
    models = copy / "models.py"
    models.write_text(models.read_text() + HELPER)
    lint_json(capsys, ".")
    models.write_text(edit(models.read_text()))
    assert lint_json(capsys, ".") == lint_json(capsys, ".", "--no-cache")


def test_a_file_added_that_an_import_names_relints_the_importer(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    models = (copy / "models.py").read_text()
    (copy / "models.py").unlink()
    assert "TC101" not in [f["code"] for f in lint_json(capsys, ".")]
    (copy / "models.py").write_text(models)  # train.py, unchanged, now imports its model from it
    assert "TC101" in [f["code"] for f in lint_json(capsys, ".")]


def test_module_parts():
    from torchcheck.analysis.units import MODULE_UNIT, module_units

    source = b"""import torch

# about Net
class Net:
    def forward(self, x):
        import math
        return x

if torch.cuda.is_available():
    def helper():
        pass

x = 1; y = 2
"""
    units = module_units(source)
    assert set(units) == {MODULE_UNIT, "Net"}
    assert units["Net"].spans == ((2, 7),)  # with the comment and blank line above it
    assert units[MODULE_UNIT].spans == ((1, 1), (8, 11), (12, 13), (13, 13))
    moved = module_units(b"\n" + source)
    assert moved["Net"].digest == units["Net"].digest and moved["Net"].spans == ((3, 8),)
    commented = module_units(source.replace(b"# about Net", b"# about its dropout"))
    assert commented["Net"].digest != units["Net"].digest  # the comments above it are its own
    body_edit = module_units(source.replace(b"return x", b"return x + 1"))
    assert body_edit["Net"].digest != units["Net"].digest and body_edit[MODULE_UNIT] == units[MODULE_UNIT]
    nested_import = module_units(source.replace(b"import math", b"import cmath"))
    assert nested_import[MODULE_UNIT].digest != units[MODULE_UNIT].digest  # imports resolve names module-wide
    assert module_units(b"def (:\n") is None
    from torchcheck.analysis.units import part_key, parts_unchanged

    assert parts_unchanged(units, body_edit, [part_key(MODULE_UNIT)], [])
    assert not parts_unchanged(units, body_edit, [part_key(MODULE_UNIT), part_key("Net")], [])
    renamed = module_units(source.replace(b"class Net", b"class Other"))
    assert not parts_unchanged(units, renamed, [part_key("Net")], [])
    two = b"def a():\n    return 1\n\ndef b():\n    return 2\n"
    longer_a = module_units(two.replace(b"    return 1", b"    x = 1\n    return x"))
    assert parts_unchanged(module_units(two), longer_a, [part_key("b")], [])
    assert not parts_unchanged(module_units(two), longer_a, [part_key("b")], [5])  # evidence shown in b moved
    trailing = b"class A:\n    x = 1\n    # dropout, in A's block for libcst\n\nclass B:\n    pass\n"
    edited = module_units(trailing.replace(b"dropout", b"no dropout"))
    assert edited["A"].digest != module_units(trailing)["A"].digest


def test_no_cache_flag_and_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("import torch.nn as nn\nc = nn.NLLLoss2d()\n")
    lint_json(capsys, "m.py", "--no-cache")
    assert not (tmp_path / ".torchcheck_cache").exists()
    (tmp_path / "pyproject.toml").write_text("[tool.torchcheck]\ncache = false\n")
    lint_json(capsys, "m.py")
    assert not (tmp_path / ".torchcheck_cache").exists()


def test_corrupt_cache_entry_is_ignored(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("import torch.nn as nn\nc = nn.NLLLoss2d()\n")
    first = lint_json(capsys, "m.py")
    for entry in (tmp_path / ".torchcheck_cache").rglob("*.json"):
        entry.write_text("{not json")
    assert lint_json(capsys, "m.py") == first


def test_a_warm_run_imports_no_parser_and_no_rule(tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(STATIC / "split_project", copy)
    probe = ("import runpy, sys\n"
             "sys.argv = ['torchcheck', 'lint', '.', '--exit-zero']\n"
             "try:\n    runpy.run_module('torchcheck', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m == 'libcst' or m.startswith('torchcheck.rules')))\n")
    runs = [subprocess.run([sys.executable, "-c", probe], cwd=copy, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert "libcst" in runs[0].stdout
    assert runs[1].stdout.strip().splitlines()[-1] == "[]"


def test_a_run_in_which_nothing_changed_takes_the_last_runs_findings_whole(tmp_path, capsys, monkeypatch):
    working_copy(tmp_path, monkeypatch)
    cold = lint_json(capsys, ".")
    assert cold
    from torchcheck.cache import Cache

    entries_read = []
    original = Cache.get
    monkeypatch.setattr(Cache, "get", lambda self, key: entries_read.append(key) or original(self, key))
    assert lint_json(capsys, ".") == cold and entries_read == []
    assert lint_json(capsys, ".", "--ignore", "TC301") == cold and entries_read  # another config: from the entries
    entries_read.clear()
    assert lint_json(capsys, ".") == cold and entries_read  # that run was the last
    entries_read.clear()
    monkeypatch.chdir(tmp_path)  # findings name their files from the working folder
    assert [f["path"] for f in lint_json(capsys, "tree")] == [str(Path("tree") / f["path"]) for f in cold]


def test_where_a_neighbour_is_cut_is_kept_for_its_content(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    from torchcheck.analysis import pieces

    cold = lint_json(capsys, ".")
    planned = []
    original = pieces.plan
    monkeypatch.setattr(pieces, "plan", lambda source: planned.append(source) or original(source))
    train = copy / "train.py"
    for edit in ("# one\n", "# two\n"):  # only train.py is linted again; models.py is read in pieces
        train.write_text(train.read_text() + edit)
        assert lint_json(capsys, ".") == cold
    assert planned == [(copy / "models.py").read_bytes()]  # the second edit's run cut it from the cache


def test_after_an_edit_only_the_entries_of_the_files_that_read_it_are_looked_up(tmp_path, capsys, monkeypatch):
    copy = working_copy(tmp_path, monkeypatch)
    (copy / "other.py").write_text("import torch\n\n\ndef f(x):\n    return torch.relu(x)\n")
    from torchcheck import cache

    cold = lint_json(capsys, ".")
    looked_up = []
    original = cache.entry_key
    monkeypatch.setattr(cache, "entry_key", lambda file, *a: looked_up.append(file.name) or original(file, *a))
    assert lint_json(capsys, ".") == cold and looked_up == []

    def edit(name: str) -> list[str]:
        looked_up.clear()
        (copy / name).write_text((copy / name).read_text() + "# edited\n")
        assert lint_json(capsys, ".") == cold
        return sorted(looked_up)

    assert edit("other.py") == ["other.py"]  # no findings read it
    # train.py's findings read models.py; engine.py's read train.py, a caller of its evaluation function
    assert edit("models.py") == ["engine.py", "models.py", "train.py"]
    assert edit("train.py") == ["engine.py", "train.py"]


@pytest.mark.parametrize("stored", ['{"format": 1, "context": "x", "files": []}', "[1, 2]", "not json",
                                    '{"format": 1, "context": "%s", "files": {"%s": [1, {"a": 2}, 3]}}'])
def test_a_damaged_last_run_is_ignored(tmp_path, capsys, monkeypatch, stored):
    copy = working_copy(tmp_path, monkeypatch)
    from torchcheck import cache

    cold = lint_json(capsys, ".")
    last_run = next((copy / cache.CACHE_DIR).rglob(cache.LAST_RUN))
    context = json.loads(last_run.read_text())["context"]
    last_run.write_text(stored.replace("%s", context, 1).replace("%s", str((copy / "train.py").resolve())))
    assert lint_json(capsys, ".") == cold


def test_an_importer_that_starts_calling_a_function_it_imports_no_otherwise_relints_the_function(tmp_path, capsys,
                                                                                                 monkeypatch):
    """As above, by an importer whose imports stay the same: only its text tells that it now calls `validate`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evaluation.py").write_text(EVALUATION)
    caller = "import evaluation\nfrom torch import nn\n\n\ndef main(loader):\n" \
             "    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))\n    {call}\n"
    (tmp_path / "train.py").write_text(caller.format(call="print(evaluation.SPLIT)"))
    assert lint_json(capsys, ".") == []
    (tmp_path / "train.py").write_text(caller.format(call="print(evaluation.validate(model, loader))"))
    cached = lint_json(capsys, ".")
    assert [f["code"] for f in cached] == ["TC301"] and cached == lint_json(capsys, ".", "--no-cache")
