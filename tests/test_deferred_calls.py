"""A function's last statement, a call of a project function (`self.post_init()` ends the `__init__`
of every transformers model), is summarised only if a question asks what it returns: nothing after
it can read what it sets."""
import libcst as cst

from torchcheck.analysis.dataflow import DeferredCall, FileAnalysis
from torchcheck.analysis.imports import ImportTable
from torchcheck.analysis.project import Project
from torchcheck.walk import descendants


def _analysis(source: str) -> FileAnalysis:
    module = cst.parse_module(source)
    analysis = FileAnalysis(module, ImportTable(module, "m"), Project(), "m")
    analysis.ensure_evaluated()
    return analysis


def _call(analysis: FileAnalysis, code: str) -> cst.Call:
    return next(n for n in descendants(analysis.module) if type(n) is cst.Call and analysis.module.code_for_node(n) == code)


def test_a_final_call_is_answered_when_asked():
    analysis = _analysis(
        "import torch.nn as nn\n\n"
        "def make_criterion():\n    return nn.CrossEntropyLoss()\n\n"
        "def build():\n    make_criterion()\n"
    )
    call = _call(analysis, "make_criterion()")
    assert type(analysis.values[call]) is DeferredCall  # not summarised while the file was evaluated
    value = analysis.value(call)
    assert (value.kind, value.qualname) == ("criterion", "CrossEntropyLoss")
    assert analysis.value(call) is value


def test_a_call_that_is_not_last_is_summarised_at_once():
    analysis = _analysis(
        "import torch.nn as nn\n\n"
        "def make_criterion():\n    return nn.CrossEntropyLoss()\n\n"
        "def build():\n    make_criterion()\n    return 1\n"
    )
    assert type(analysis.values[_call(analysis, "make_criterion()")]) is not DeferredCall


def test_functions_defined_inside_see_what_the_final_call_set():
    analysis = _analysis(
        "import torch.nn as nn\n\n"
        "class Settings:\n"
        "    def choose(self):\n"
        "        self.criterion = nn.CrossEntropyLoss()\n\n"
        "def train():\n"
        "    settings = Settings()\n"
        "    def criterion():\n"
        "        return settings.criterion\n"
        "    settings.choose()\n"
    )
    read = next(n for n in descendants(analysis.module) if type(n) is cst.Return).value
    assert analysis.value(read).kind == "criterion"
