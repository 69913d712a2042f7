"""Jupyter notebooks for the linter: the fixture notebooks' planted bugs found at their cell and
line, IPython syntax, cells that are not Python, broken files, output formats, fixes written
byte for byte into the changed cells only, files the linter does not read."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import nbformat
import pytest

from torchcheck.cli import main
from torchcheck.config import Config
from torchcheck.engine import lint_paths
from torchcheck.notebook import Cell, to_python

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "fixtures" / "notebooks"
CASES = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECT = re.compile(r"#\s*expect:\s*(?P<rules>[\w\-, ]+)")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def planted(path: Path) -> set[tuple[int, int, str]]:
    """(cell, line, rule) of every `# expect: rule` comment in the notebook's code cells."""
    expected = set()
    for position, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"], 1):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for number, line in enumerate(source.splitlines(), 1):
            match = EXPECT.search(line)
            if match:
                expected.update((position, number, rule.strip()) for rule in match["rules"].split(","))
    return expected


def notebook(tmp_path: Path, *sources: str, name: str = "nb.ipynb", markdown_first: bool = True) -> Path:
    """A notebook of code cells (after a markdown cell), written by nbformat as Jupyter does."""
    cells = [nbformat.v4.new_markdown_cell("# Notes")] if markdown_first else []
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_planted_bugs_are_found_at_their_cell_and_line(path):
    found = {(f.cell, f.line, f.name) for f in lint_paths([path], Config(), jobs=1).findings}
    assert found == planted(path)
    assert bool(found) == path.stem.endswith("_buggy")


def test_dataflow_crosses_cells_and_evidence_points_into_cells():
    findings = lint_paths([NOTEBOOKS / "classifier_tutorial_buggy.ipynb"], Config(), jobs=1).findings
    softmax = next(f for f in findings if f.name == "softmax-before-cross-entropy")
    assert (softmax.cell, softmax.line) == (11, 9)  # the loss in the training cell
    evidence = {(r.cell, r.line, r.message) for r in softmax.related}
    assert (7, 20, "softmax applied here") in evidence  # the model's forward, four cells up
    assert any(cell == 9 and "created here" in message for cell, _, message in evidence)  # the criterion's cell
    assert all(r.cell_id for r in softmax.related)


# -- IPython syntax ------------------------------------------------------------------------------
def translated(source: str) -> list[str]:
    code = to_python(Cell(1, None, textwrap.dedent(source).lstrip("\n")))
    return [line.rstrip("\n") for line in code.python_lines]


def test_magics_and_shell_lines_become_opaque_calls_line_for_line():
    assert translated("""
        %matplotlib inline
        !pip install -q torch \\
            torchvision
        files = !ls data
        gpu = %env CUDA_VISIBLE_DEVICES
        ?torch.optim.SGD
        model??
        for batch in loader:
            %time step(batch)
        x = 1  # what?
    """) == [
        "get_ipython().run_line_magic('matplotlib', 'inline')",
        "get_ipython().system('pip install -q torch \\\\')",
        "",
        "files = get_ipython().getoutput('ls data')",
        "gpu = get_ipython().run_line_magic('env', 'CUDA_VISIBLE_DEVICES')",
        "get_ipython().run_line_magic('pinfo', 'torch.optim.SGD')",
        "get_ipython().run_line_magic('pinfo', 'model')",
        "for batch in loader:",
        "    get_ipython().run_line_magic('time', 'step(batch)')",
        "x = 1  # what?",
    ]


def test_ipython_syntax_is_only_looked_for_where_a_statement_starts():
    source = '''
        text = """
        %not a magic
        !nor a shell line
        """
        total = (1
            % 2)
        ratio = a != b
        x %= 3
    '''
    assert translated(source) == textwrap.dedent(source).strip("\n").splitlines()


def test_cell_magics_keep_a_python_body_and_hide_other_languages():
    assert translated("%%time\nfor i in range(3):\n    step(i)") == [
        "get_ipython().run_cell_magic('time', '', '')", "for i in range(3):", "    step(i)"]
    assert translated("%%bash\necho hi\nls") == ["get_ipython().run_cell_magic('bash', '', 'echo hi\\nls')", "", ""]


def test_a_cell_that_is_not_python_is_reported_alone(tmp_path):
    path = notebook(tmp_path, "import torch.nn.functional as F", "x = 1\ndef broken(:\n    pass",
                    "y = F.sigmoid(x)")
    findings = lint_paths([path], Config(), jobs=1).findings
    assert [(f.code, f.cell, f.line) for f in findings] == [("TC001", 3, 2), ("TC405", 4, 1)]
    assert findings[0].message.startswith("Cannot parse cell:")


def test_suppression_comments_work_in_cells(tmp_path):
    path = notebook(tmp_path, "import torch.nn.functional as F",
                    "a = F.sigmoid(x)  # noqa: TC405\nb = F.tanh(x)  # torchcheck: ignore[deprecated-functional-activation]"
                    "\nc = F.sigmoid(x)")
    assert [(f.cell, f.line) for f in lint_paths([path], Config(), jobs=1).findings] == [(3, 3)]


def test_an_indented_cell_is_linted_dedented_with_its_own_columns(tmp_path):
    path = notebook(tmp_path, "import torch.nn.functional as F", "    y = F.sigmoid(x)\n    z = y")
    (finding,) = lint_paths([path], Config(), jobs=1).findings
    assert (finding.cell, finding.line, finding.column, finding.end_column) == (3, 1, 9, 18)


# -- broken notebooks ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('{"cells": [', "not valid JSON (Expecting value at line 1, column 12)"),
    ('[1, 2]', "not a Jupyter notebook"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code"}]}', "invalid nbformat 4"),
    ('{"nbformat": 9, "cells": []}', "nbformat 9"),
], ids=["json", "not-a-notebook", "schema", "version"])
def test_a_broken_notebook_is_an_error_and_the_run_goes_on(tmp_path, capsys, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.ipynb").write_text(text)
    notebook(tmp_path, "import torch.nn.functional as F\ny = F.sigmoid(x)")
    code, out, _ = run(capsys, "lint", ".", "--format", "concise", "--no-cache")
    assert code == 2
    assert "broken.ipynb:1:1: TC003 Cannot read notebook: " in out and message in out
    assert "nb.ipynb:cell 2:2:5: TC405" in out


def test_a_notebook_that_is_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "latin.ipynb"
    path.write_bytes('{"cells": ["é"]}'.encode("latin-1"))
    (finding,) = lint_paths([path], Config(), jobs=1).findings
    assert finding.code == "TC003" and "not UTF-8" in finding.message


# -- output formats ------------------------------------------------------------------------------
def test_text_names_the_cell(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notebook(tmp_path, "import torch.nn.functional as F", "x = 1\n\ny = F.sigmoid(x)")
    code, out, _ = run(capsys, "lint", "nb.ipynb", "--no-cache")
    assert code == 1
    assert " --> nb.ipynb:cell 3:3:5\n" in out
    assert "3 | y = F.sigmoid(x)" in out  # the excerpt is the cell's own line


def test_json_and_sarif_carry_the_cell_its_id_and_the_line_within_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notebook(tmp_path, "import torch\nimport torch.nn.functional as F", "x = 1\ny = F.sigmoid(x)")
    code, out, _ = run(capsys, "lint", "nb.ipynb", "--format", "json", "--no-cache")
    (finding,) = json.loads(out)["findings"]
    assert {k: finding[k] for k in ("path", "line", "column", "cell", "cell_id")} == {
        "path": "nb.ipynb", "line": 2, "column": 5, "cell": 3, "cell_id": "cell-2"}
    assert finding["fix"]["edits"] == [{"start": 10, "end": 19, "content": "torch.sigmoid", "cell": 3}]
    assert "x = 1\ny = F.sigmoid(x)"[10:19] == "F.sigmoid"  # edit offsets count in the cell's source

    code, out, _ = run(capsys, "lint", "nb.ipynb", "--format", "sarif", "--no-cache")
    sarif = json.loads(out)
    jsonschema.validate(sarif, json.loads((ROOT / "tests" / "sarif_subset.schema.json").read_text()))
    (location,) = sarif["runs"][0]["results"][0]["locations"]
    assert location["properties"] == {"cell": 3, "cellId": "cell-2", "cellLine": 2}
    assert location["physicalLocation"]["region"]["startLine"] == 2


def test_python_files_keep_their_json_shape(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("import torch\nimport torch.nn.functional as F\ny = F.sigmoid(x)\n")
    _, out, _ = run(capsys, "lint", "train.py", "--format", "json", "--no-cache")
    (finding,) = json.loads(out)["findings"]
    assert "cell" not in finding and "cell" not in finding["fix"]["edits"][0]


def test_cached_findings_keep_their_cells(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.torchcheck]\n")
    notebook(tmp_path, "import torch.nn.functional as F", "y = F.sigmoid(x)")
    first = run(capsys, "lint", "nb.ipynb", "--format", "json")[1]
    assert (tmp_path / ".torchcheck_cache").is_dir()
    assert run(capsys, "lint", "nb.ipynb", "--format", "json")[1] == first


# -- fixes -----------------------------------------------------------------------------------------
# A notebook as Jupyter writes it (indent 1, sorted keys), with outputs and markdown that mention
# the code being fixed: only the changed lines of the code cells may change.
JUPYTER_STYLE = r'''{
 "cells": [
  {
   "cell_type": "markdown",
   "id": "intro",
   "metadata": {},
   "source": [
    "Why `F.sigmoid(x)`? Résumé of the loss.\n",
    "\n",
    "```python\n",
    "y = F.sigmoid(x)\n",
    "```"
   ]
  },
  {
   "cell_type": "code",
   "execution_count": 1,
   "id": "imports",
   "metadata": {"collapsed": false, "tags": ["setup"]},
   "outputs": [],
   "source": [
    "%matplotlib inline\n",
    "import torch\n",
    "import torch.nn as nn\n",
    "import torch.nn.functional as F"
   ]
  },
  {
   "cell_type": "code",
   "execution_count": 2,
   "id": "loss",
   "metadata": {},
   "outputs": [
    {
     "name": "stderr",
     "output_type": "stream",
     "text": [
      "UserWarning: y = F.sigmoid(x) is deprecated\n"
     ]
    },
    {
     "data": {
      "text/plain": [
       "tensor([0.5000])"
      ]
     },
     "execution_count": 2,
     "metadata": {},
     "output_type": "execute_result"
    }
   ],
   "source": [
    "x = torch.zeros(1)\n",
    "y = F.sigmoid(x)  # the café's gate\n",
    "criterion = nn.BCELoss(size_average=False)\n",
    "y"
   ]
  },
  {
   "cell_type": "code",
   "execution_count": 3,
   "id": "eval",
   "metadata": {},
   "outputs": [],
   "source": [
    "def evaluate(model, loader):\n",
    "    model.eval()\n",
    "    return [model(batch) for batch in loader]"
   ]
  },
  {
   "cell_type": "code",
   "execution_count": null,
   "id": "untouched",
   "metadata": {},
   "outputs": [],
   "source": "!ls\nz = F.tanh(x)"
  }
 ],
 "metadata": {
  "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
  "language_info": {"name": "python"}
 },
 "nbformat": 4,
 "nbformat_minor": 5
}
'''


def test_fix_rewrites_only_the_changed_code_lines_byte_for_byte(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "nb.ipynb"
    path.write_text(JUPYTER_STYLE, encoding="utf-8")
    code, out, _ = run(capsys, "lint", "nb.ipynb", "--fix", "--unsafe-fixes", "--no-cache")
    expected = (JUPYTER_STYLE
                .replace('    "y = F.sigmoid(x)  # the café', '    "y = torch.sigmoid(x)  # the café')
                .replace('"criterion = nn.BCELoss(size_average=False)\\n"', '"criterion = nn.BCELoss(reduction=\\"sum\\")\\n"')
                .replace('    "def evaluate(model, loader):\\n",', '    "@torch.no_grad()\\n",\n    "def evaluate(model, loader):\\n",')
                .replace('"source": "!ls\\nz = F.tanh(x)"', '"source": "!ls\\nz = torch.tanh(x)"'))
    assert expected != JUPYTER_STYLE
    assert path.read_text(encoding="utf-8") == expected
    assert code == 0 and "Fixed 4 findings." in out
    assert run(capsys, "lint", "nb.ipynb", "--fix", "--unsafe-fixes", "--no-cache")[0] == 0
    assert path.read_text(encoding="utf-8") == expected  # fixed twice: unchanged the second time


def test_fix_keeps_another_writers_layout(tmp_path, capsys, monkeypatch):
    """Two-space indentation, unsorted keys, CRLF line ends, a byte order mark, ASCII escapes."""
    monkeypatch.chdir(tmp_path)
    text = ('\ufeff{\r\n  "nbformat": 4,\r\n  "nbformat_minor": 0,\r\n  "metadata": {"colab": {"name": "x"}},\r\n'
            '  "cells": [\r\n    {\r\n      "source": [\r\n        "import torch.nn.functional as F\\n",\r\n'
            '        "import torch\\n",\r\n        "# caf\\u00e9\\n",\r\n        "y = F.sigmoid(x)"\r\n      ],\r\n      "cell_type": "code",\r\n'
            '      "metadata": {"id": "abc"},\r\n      "execution_count": null,\r\n      "outputs": []\r\n    }\r\n  ]\r\n}')
    path = tmp_path / "colab.ipynb"
    path.write_bytes(text.encode("utf-8"))
    assert run(capsys, "lint", "colab.ipynb", "--fix", "--no-cache")[0] == 0
    assert path.read_bytes().decode("utf-8") == text.replace('"y = F.sigmoid(x)"', '"y = torch.sigmoid(x)"')


def test_diff_shows_the_changed_cells_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "nb.ipynb"
    path.write_text(JUPYTER_STYLE, encoding="utf-8")
    code, out, _ = run(capsys, "lint", "nb.ipynb", "--diff", "--no-cache")
    assert code == 1
    assert path.read_text(encoding="utf-8") == JUPYTER_STYLE
    assert "--- a/nb.ipynb:cell 3\n+++ b/nb.ipynb:cell 3\n" in out
    assert "\n-y = F.sigmoid(x)  # the café's gate\n" in out and "\n+y = torch.sigmoid(x)  # the café's gate\n" in out
    assert "-z = F.tanh(x)\n+z = torch.tanh(x)\n" in out
    assert "cell 4" not in out  # its fix is unsafe


def test_a_fix_that_cannot_go_into_a_cell_is_left_with_the_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = notebook(tmp_path, "import torch\nimport torch.nn.functional as F", "    y = F.sigmoid(x)")
    before = path.read_bytes()
    code, out, _ = run(capsys, "lint", "nb.ipynb", "--fix", "--no-cache")
    assert code == 1 and path.read_bytes() == before
    assert "note: fix not applied: Use `torch.sigmoid`: the cell is indented as a whole" in out


def test_an_nbformat_3_notebook_is_linted_and_left_as_it_is(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    v3 = nbformat.v3
    nb = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[
        v3.new_text_cell("markdown", source="# Old"),
        v3.new_code_cell(input="import torch\nimport torch.nn.functional as F\ny = F.sigmoid(x)")])])
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.writes(nb, version=3))
    before = path.read_bytes()
    code, out, _ = run(capsys, "lint", "old.ipynb", "--fix", "--no-cache", "--format", "concise")
    assert "old.ipynb:cell 2:3:5: TC405" in out
    assert path.read_bytes() == before


# -- discovery -------------------------------------------------------------------------------------
def test_folders_are_searched_for_notebooks_with_the_same_excludes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = "import torch.nn.functional as F\ny = F.sigmoid(x)"
    (tmp_path / "course" / ".ipynb_checkpoints").mkdir(parents=True)
    notebook(tmp_path / "course", source, name="lesson.ipynb")
    notebook(tmp_path / "course" / ".ipynb_checkpoints", source, name="lesson-checkpoint.ipynb")
    (tmp_path / "pyproject.toml").write_text('[tool.torchcheck]\nexclude = ["drafts"]\n')
    (tmp_path / "drafts").mkdir()
    notebook(tmp_path / "drafts", source, name="draft.ipynb")
    code, out, _ = run(capsys, "lint", ".", "--format", "concise", "--no-cache")
    assert code == 1
    assert out.splitlines()[0].startswith("course/lesson.ipynb:cell 2:2:5: TC405")
    assert "Found 1 finding in 1 file." in out


def test_a_notebook_beside_a_module_of_the_same_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("import torch.nn.functional as F\n\n\ndef gate(x):\n    return F.sigmoid(x)\n")
    notebook(tmp_path, "from train import gate\nimport torch.nn.functional as F\ny = F.tanh(x)", name="train.ipynb")
    code, out, _ = run(capsys, "lint", ".", "--format", "concise", "--no-cache")
    assert "train.ipynb:cell 2:3:5: TC405" in out and "train.py:5:12: TC405" in out


def test_files_torchcheck_does_not_read_are_errors_that_name_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("import torch\n")
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 not python")
    (tmp_path / "train").write_text("#!/usr/bin/env python3\nimport torch.nn.functional as F\ny = F.sigmoid(x)\n")
    code, out, _ = run(capsys, "lint", "notes.txt", "model.pt", "train", "--format", "concise", "--no-cache")
    assert code == 2
    assert "notes.txt:1:1: TC003 Not linted: `notes.txt` is not a Python file" in out
    assert "model.pt:1:1: TC003 Not linted: `model.pt`" in out
    assert "train:3:5: TC405" in out  # a python script without a suffix is read
    assert "All checks passed!" not in out


def test_a_run_that_read_no_file_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code, out, _ = run(capsys, "lint", "empty", "--no-cache")
    assert code == 0
    assert "nothing was linted" in out and "All checks passed!" not in out
    code, out, err = run(capsys, "lint", "empty", "--format", "json", "--no-cache")
    assert json.loads(out)["summary"]["files"] == 0 and "nothing was linted" in err


def test_the_linter_reads_notebooks_without_torch_or_ipython(tmp_path):
    path = notebook(tmp_path, "%matplotlib inline\nimport torch.nn.functional as F", "y = F.sigmoid(x)")
    script = ("import sys\nsys.modules['torch'] = sys.modules['IPython'] = None\n"
              "from torchcheck.cli import main\nsys.exit(main(['lint', sys.argv[1], '--format', 'concise', '--no-cache']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's torchcheck, from any folder
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert "nb.ipynb:cell 3:1:5: TC405" in done.stdout


def test_pre_commit_hooks_take_notebooks():
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert hooks.count("types_or: [python, pyi, jupyter]") == 2


def test_pytest_lints_each_notebook_as_one_item(pytester):
    notebook(pytester.path, "import torch.nn.functional as F", "y = F.sigmoid(x)", name="lesson.ipynb")
    notebook(pytester.path, "import torch", "y = torch.sigmoid(torch.zeros(1))", name="clean.ipynb")
    (pytester.path / "broken.ipynb").write_text("{")
    result = pytester.runpytest("--torchcheck", "-k", "torchcheck", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(["*TC405 `F.sigmoid` is deprecated*", "* --> lesson.ipynb:cell 3:1:5",
                                 "*1 | y = F.sigmoid(x)"])
    result.stdout.fnmatch_lines(["*TC003 Cannot read notebook: not valid JSON*"])


def test_max_file_size_measures_a_notebooks_code_not_its_outputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.torchcheck]\nmax-file-size = 0.01\n")
    path = notebook(tmp_path, "import torch\nimport torch.nn.functional as F", "y = F.sigmoid(x)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "A" * 50_000})]
    nbformat.write(nb, path)
    assert "nb.ipynb:cell 3:1:5: TC405" in run(capsys, "lint", "nb.ipynb", "--format", "concise", "--no-cache")[1]
    nb.cells[2].source = "y = F.sigmoid(x)\n" + "# padding\n" * 2000
    nbformat.write(nb, path)
    assert "TC004 Skipped" in run(capsys, "lint", "nb.ipynb", "--format", "concise", "--no-cache")[1]


@pytest.mark.parametrize("written, rewritten", [
    ('["a\\n", "b"]', '["x\\n", "y\\n", "z"]'),
    ('[\n    "a\\n",\n    "b"\n   ]', '[\n    "x\\n",\n    "y\\n",\n    "z"\n   ]'),
    ('[\n    "a"\n   ]', '[\n    "x\\n",\n    "y\\n",\n    "z"\n   ]'),
    ('"a\\nb"', '"x\\ny\\nz"'),
], ids=["compact", "jupyter", "one-line", "string"])
def test_a_source_is_rewritten_in_the_form_it_was_written_in(written, rewritten):
    from torchcheck.notebook import _encode_like

    text = '{"source": ' + written + "}"
    assert _encode_like(text, 11, len(text) - 1, "x\ny\nz", ensure_ascii=False) == rewritten
