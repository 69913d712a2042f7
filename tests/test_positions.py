"""Findings' positions come from the top-level statements that hold their nodes (`positions.py`):
every node gets the span libcst gives it when it generates the whole tree."""
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from torchcheck.engine import decode
from torchcheck.positions import Positions
from torchcheck.walk import descendants

ROOT = Path(__file__).resolve().parent.parent

SOURCES = {
    "crlf": "import torch\r\n\r\n# a comment\r\ndef f(x):\r\n    return x\r\n\r\nclass A:\r\n    pass\r\n",
    "tabs and one-liners": "import os\nif os.name: SEP = 1\ndef g():\n\tif 1:\n\t\treturn 2\na = 1; b = 2\n",
    "decorators and comments between them": "@first\n# between\n@second(\n    1)\ndef h(): ...\n\n\n# above\nclass B:  # here\n"
                                            "    '''doc'''\n    def m(self): return 1\n",
    "continuations and a form feed": "x = (1 +\n     2)\ny = 1 + \\\n    2\n\x0cz = 3\n",
    "async and match": "async def f():\n    async with a as b:\n        pass\nmatch x:\n    case 1:\n        pass\n",
    "no newline at the end": "import torch\nloss = torch.nn.CrossEntropyLoss()",
    "byte order mark": "\ufeff# a header comment\n\nimport torch\n",
    "compound statements": "for i in x:\n  if i:\n      a = 1\n  elif j:\n    # note\n    b = 2\n  else:\n    c = 3\nelse:\n  d = 4\n"
                           "while 1:\n    with a as b, c:\n        try:\n            e = 5\n        except (A, B) as err:\n"
                           "            f = 6\n        except C:\n            pass\n        else:\n            g = 7\n"
                           "        finally:\n            h = 8\nelse:\n    if k: m = 9\n    else:\n"
                           "        if n:\n            o = 10\n",
    "blocks indented unlike the module": "def f():\n    class A:\n      # two spaces\n      @property\n      def x(self):\n"
                                         "        return 1; y = 2\n    return A\n",
}


def _fixture_sources():
    return {str(p.relative_to(ROOT)): decode(p.read_bytes()) for p in sorted((ROOT / "fixtures" / "static").rglob("*.py"))}


@pytest.mark.parametrize("text", [*SOURCES.values(), *_fixture_sources().values()],
                         ids=[*SOURCES, *_fixture_sources()])
def test_every_node_is_where_libcst_puts_it(text):
    module = cst.parse_module(text.encode("utf-8-sig" if text.startswith("\ufeff") else "utf-8"))
    text = text.lstrip("\ufeff")
    whole = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    nodes = [node for statement in module.body for node in [statement, *descendants(statement)]]
    positions = Positions(module, text)
    for node in reversed(nodes):  # the last statement first: no statement relies on another
        assert positions[node] == whole[node], cst.Module([]).code_for_node(node)


def test_one_finding_generates_only_the_statement_that_holds_it():
    text = ("import torch\n\n\nclass Net:\n    def first(self):\n        return 1\n\n"
            "    def second(self):\n        x = 1\n        return f(x)\n")
    module = cst.parse_module(text)
    positions = Positions(module, text)
    net = module.body[1]
    second = net.body.body[1]
    call = second.body.body[1].body[0].value
    assert (positions[call].start.line, positions[call].start.column) == (10, 15)
    generated = set(positions._spans)  # the `return` line only: not the class, its methods or `x = 1`
    assert {net, *net.body.body, second.body.body[0]}.isdisjoint(generated) and not positions._whole


def test_a_node_in_a_loop_generates_only_its_line():
    text = "def train():\n    for batch in loader:\n        if batch:\n            x = 1\n        else:\n            y = f(x)\n"
    module = cst.parse_module(text)
    positions = Positions(module, text)
    loop = module.body[0].body.body[0]
    assignment = loop.body.body[0].orelse.body.body[0]
    call = assignment.body[0].value
    assert (positions[call].start.line, positions[call].start.column) == (6, 16)
    assert loop not in positions._spans and assignment in positions._spans


def test_a_name_in_a_header_generates_the_header_alone():
    text = "@register\nclass Net(Base):\n    def forward(self, x):\n        return x\n    size = 2\n"
    module = cst.parse_module(text)
    positions = Positions(module, text)
    net = module.body[0]
    assert (positions[net.name].start.line, positions[net.name].start.column) == (2, 6)
    assert positions[net.bases[0].value].start.column == 10
    assert {net, *net.body.body}.isdisjoint(positions._spans)


def test_nodes_of_other_trees_are_not_in_it():
    text = "x = 1\n"
    positions = Positions(cst.parse_module(text), text)
    assert cst.Name("x") not in positions


def test_the_module_itself_falls_back_to_the_whole_tree():
    text = "# header\nx = 1\n"
    module = cst.parse_module(text)
    assert Positions(module, text)[module] == MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)[module]
