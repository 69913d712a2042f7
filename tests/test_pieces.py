"""Modules that other files ask about are parsed in pieces (`analysis/pieces.py`): the pieces put
back together are the whole file's tree, node for node, and an analysis built from pieces answers
exactly as one built from the whole file."""
import json
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from torchcheck.analysis import pieces
from torchcheck.analysis.imports import ImportTable
from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.engine import project_modules
from torchcheck.linter import lint_file
from torchcheck.registry import all_rules
from torchcheck.walk import descendants

ROOT = Path(__file__).resolve().parent.parent

TRICKY = '''"""A module."""
import os

if os.name == "nt":
  SEP = "\\\\"  # the first indented line: two spaces, the module's indentation


# a comment above a decorated function
@staticmethod
@other(
    1,
)
def first(x):
  """Its docstring."""
  try:
    import numpy as np
  except ImportError:
    import math as np
  else:
    from json import loads as np
  finally:
    from re import compile
  return np
  # an indented comment after its body


async def runner():
  import asyncio as aio
  return aio


class Net(Base):
  """A model."""
  layer = 1

  def forward(self, x):
    from torch.nn import functional as F
    return F.relu(x)
    # deeper: the method's own

  # at the class's indentation: the next method's
  @property
  def size(self):
    def inner():
      return 1
    return inner()

  class Inner:
    pass

  def twice(self): return 1
  def twice(self, x): return x  # defined twice: left in the class
  def last(self):
    return 2
  # after the last method, in the class


def one_liner(): return 1
def first_of_two(): pass
def first_of_two(): return 2  # defined twice: not cut


class Last:
  pass
  # no newline at the end'''


def parse_whole(source: bytes) -> tuple[cst.Module, pieces.Cut]:
    cut = pieces.cut(source, json.loads(json.dumps(pieces.plan(source))))  # as a cache keeps the plan
    assert cut is not None and cut == pieces.cut(source)
    skeleton = cst.parse_module(cut.skeleton)
    statements = {}
    for name, piece in cut.pieces.items():
        statement = pieces.parse_piece(piece)[1]
        methods = {method: pieces.parse_method(part)[1] for method, part in piece.methods.items()}
        statements[name] = pieces.whole_class(statement, methods) if methods else statement
    return pieces.whole(skeleton, statements), cut


@pytest.mark.parametrize("path", [*sorted((ROOT / "torchcheck").rglob("*.py"))[:40],
                                  *sorted((ROOT / "fixtures").rglob("*.py"))[:40]], ids=lambda p: p.name)
def test_the_pieces_put_together_are_the_whole_tree(path):
    source = path.read_bytes()
    if pieces.cut(source) is None:
        return
    rebuilt, cut = parse_whole(source)
    full = cst.parse_module(source)
    assert rebuilt.code == source.decode() and rebuilt.deep_equals(full)
    assert ImportTable(cst.parse_module(cut.skeleton), "m").aliases == ImportTable(full, "m").aliases


def test_tricky_layouts_are_cut_exactly_or_left_whole():
    source = TRICKY.encode()
    rebuilt, cut = parse_whole(source)
    full = cst.parse_module(source)
    assert rebuilt.code == TRICKY and rebuilt.deep_equals(full)
    assert set(cut.pieces) == {"first", "runner", "Net", "one_liner", "Last"}
    assert set(cut.pieces["Net"].methods) == {"forward", "size", "last"}
    skeleton = cst.parse_module(cut.skeleton)
    assert skeleton.default_indent == full.default_indent == "  "
    assert ImportTable(skeleton, "m").aliases == ImportTable(full, "m").aliases  # nested imports, in order


def test_each_statement_of_a_skeleton_or_piece_knows_its_line_in_the_file():
    source = TRICKY.encode()
    cut = pieces.cut(source)
    lines = source.decode().splitlines()
    skeleton = cst.parse_module(cut.skeleton)
    trees = [(skeleton, cut.lines, [s for s in skeleton.body if getattr(s, "name", None) and s.name.value in cut.pieces])]
    for piece in cut.pieces.values():
        tree = cst.parse_module(piece.text)
        stubs = [s for s in tree.body[-1].body.body if type(s) is cst.FunctionDef and s.name.value in piece.methods]
        trees.append((tree, piece.lines, [tree.body[0], *stubs]))  # not the padding, nor the stubs
        trees += [(cst.parse_module(m.text), m.lines, []) for m in piece.methods.values()]
    checked = 0
    for tree, line_map, skipped in trees:
        positions = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
        left_out = {id(node) for stub in skipped for node in descendants(stub)}
        for node, span in positions.items():
            if type(node) in (cst.Name, cst.SimpleString) and id(node) not in left_out and node.value != "_":
                line = pieces.file_line(line_map, span.start.line)
                assert lines[line - 1][span.start.column:].startswith(node.value.split("\n")[0])
                checked += 1
    assert checked > 50


@pytest.mark.parametrize("source", [b"def f():\r\n    return 1\r\n", b"# -*- coding: latin-1 -*-\nx = 1\n\n\ndef f():\n    pass\n",
                                    b"\xef\xbb\xbfx = 1\n\n\ndef f():\n    pass\n", b"x = (\n", b"x = 1\n"])
def test_what_cannot_be_cut_exactly_is_parsed_whole(source):
    assert pieces.cut(source) is None


MODELS = '''import torch.nn as nn
import torch.nn.functional as F


def unused_helper(x):
    return x * 2


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=1)


class Unrelated:
    pass
'''

TRAIN = '''import torch.nn as nn
from models import Net

model = Net()
criterion = nn.CrossEntropyLoss()


def step(x, y):
    return criterion(model(x), y)
'''


def lint_tree(folder: Path, linting, order=("train",)):
    folder.mkdir()
    for name, text in (("models", MODELS), ("train", TRAIN)):
        (folder / f"{name}.py").write_text(text)
    modules = project_modules(sorted(folder.glob("*.py")), [folder])
    project = Project(modules)
    project.expect(linting)
    results = {}
    for name in order:
        result = lint_file(folder / f"{name}.py", Config(), list(all_rules()), project, name)
        results[name] = ([(f.code, f.line, [(Path(r.path).name, r.line) for r in f.related]) for f in result.findings],
                         result.dependencies)
    return results, project


def test_a_neighbour_in_pieces_answers_as_the_whole_file(tmp_path):
    whole, _ = lint_tree(tmp_path / "whole", linting={"models", "train"})
    cut, project = lint_tree(tmp_path / "cut", linting={"train"})
    assert cut == whole
    assert whole["train"][0][0][:2] == ("TC101", 9)
    assert ("models.py", 15) in whole["train"][0][0][2]  # evidence in a piece keeps its line
    assert set(project._analyses["models"]._pieces) == {"unused_helper", "Unrelated"}  # never read, never parsed


def test_a_module_first_parsed_in_pieces_is_linted_whole(tmp_path):
    whole, _ = lint_tree(tmp_path / "whole", linting={"models", "train"}, order=("train", "models"))
    cut, project = lint_tree(tmp_path / "cut", linting={"train"}, order=("train", "models"))
    assert cut == whole
    assert project._analyses["models"].module.code == MODELS


def test_a_piece_libcst_cannot_parse_stays_a_stub_and_its_module_is_linted_whole(tmp_path, monkeypatch):
    from torchcheck.analysis import dataflow

    whole, _ = lint_tree(tmp_path / "whole", linting={"models", "train"}, order=("models",))
    original = dataflow.parse_piece

    def refuse_net(piece):
        if b"class Net" in piece.text:
            raise ValueError("not parsable")
        return original(piece)

    monkeypatch.setattr(dataflow, "parse_piece", refuse_net)
    cut, _ = lint_tree(tmp_path / "cut", linting={"train"}, order=("train", "models"))
    assert cut["train"][0] == []  # Net is unknown to train.py, and nothing crashed
    assert cut["models"] == whole["models"]  # linted from a whole parse of its own


def test_a_stubbed_name_defined_again_in_an_if_block_keeps_both_functions_apart():
    from torchcheck.analysis.dataflow import FileAnalysis

    source = MODELS + "\n\nif False:\n    def unused_helper(x):\n        return x\n"
    cut = pieces.cut(source.encode())
    assert "unused_helper" in cut.pieces
    skeleton, full = cst.parse_module(cut.skeleton), cst.parse_module(source)
    lazy = FileAnalysis(skeleton, ImportTable(skeleton, "m"), Project(), "m", cut)
    whole = FileAnalysis(full, ImportTable(full, "m"), Project(), "m")
    lazy.read("unused_helper")
    assert lazy.complete() and lazy.module.code == source

    def functions(analysis):
        return [analysis.module.code_for_node(f.node) for f in analysis.all_functions]

    assert functions(lazy) == functions(whole)
    assert lazy.module.code_for_node(lazy.functions["unused_helper"].node).strip().endswith("return x")
