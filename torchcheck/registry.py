"""All rules, found by scanning `torchcheck.rules`, plus the codes the engine reports itself."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from torchcheck.rule import PseudoRule, Rule
from torchcheck.types import Severity

ENGINE_RULES = [
    PseudoRule("TC001", "syntax-error", "The file cannot be parsed as Python 3.", Severity.ERROR, """
        The file could not be parsed, so no rule checked it. The message gives the line and the
        parser's reason. Python 2 files, merge-conflict markers and stray null bytes are the usual
        causes. The rest of the tree is still linted. In a notebook, it is the cell that cannot be
        parsed (IPython syntax such as `%magic` and `!shell` is understood), and the notebook's other
        cells are still linted.
        """),
    PseudoRule("TC002", "internal-error", "A rule crashed on this file.", Severity.ERROR, """
        A rule raised an exception on this file. The other rules' findings for the file, and all other
        files, are still reported. Please report the message with the file that caused it.
        """),
    PseudoRule("TC004", "file-too-large", "The file is larger than `max-file-size` and was skipped.", Severity.WARNING, """
        Files larger than `max-file-size` (default 4 MB, in `[tool.torchcheck]`) are not analysed:
        they are almost always generated (tables, vendored bundles), and parsing them costs far more
        time and memory than all the hand-written files together. Raise the limit to lint them. A
        notebook is measured by its code cells, not by its outputs.
        """),
    PseudoRule("TC003", "io-error", "The file cannot be read or decoded.", Severity.ERROR, """
        The path does not exist, cannot be read (permissions), disappeared while linting, or its bytes
        are not valid in its declared encoding (PEP 263, UTF-8 by default). A notebook that is not
        valid JSON or not a valid nbformat notebook is reported here too, with the reason. So is a
        file named on the command line that torchcheck does not read (`notes.txt`, `model.pt`): it is
        never passed over in silence.
        """),
]


@lru_cache(maxsize=1)
def all_rules() -> tuple[type[Rule], ...]:
    import torchcheck.rules as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and getattr(obj, "code", None) and obj.__module__ == module.__name__:
                found.append(obj)
    return tuple(sorted(found, key=lambda r: r.code))


@lru_cache(maxsize=1)
def _catalog() -> tuple:
    return tuple(sorted([*all_rules(), *ENGINE_RULES, *runtime_only_rules()], key=lambda r: r.code))


def catalog() -> list:
    """Every entry of the rule catalog, static rules and engine codes, sorted by code."""
    return list(_catalog())


@lru_cache(maxsize=None)
def _by_selector() -> dict:
    return {key: rule for rule in _catalog() for key in (rule.code, rule.name)}


RUNTIME_ONLY_RULES = [
    PseudoRule("TC203", "non-finite-loss", "A loss or gradient became NaN or Inf", Severity.ERROR, """
        ## What it does
        At run time, checks every loss returned by a `torch.nn.functional` loss (and so by every
        `nn.*Loss` module) and, every 16 optimizer steps, the gradients of the parameters about to
        be updated. Reports the first step where a NaN or Inf appeared, and the parameter (and so
        the module) whose gradient it was. On an accelerator, losses are copied into a buffer on the
        device and read together every 16 steps (one synchronisation), so no step waits for the
        device and the exact first step is still reported.

        ## Why is this bad?
        One NaN in a loss or gradient turns every parameter the optimizer touches into NaN; training
        goes on "successfully" while the model is destroyed, and the first step where it happened
        (a too-high learning rate, a `log(0)`, a division by a zero batch statistic) is long gone by
        the time anyone looks.

        ## Example
        ```python
        loss = criterion(torch.log(probs), y)   # log(0) = -inf for a zero probability
        loss.backward()
        optimizer.step()
        ```

        ## Use instead
        ```python
        loss = criterion(torch.log(probs.clamp_min(1e-8)), y)   # or log_softmax on the logits
        ```

        ## Fix safety
        Runtime only: no fix.
        """, runtime_check=True),
    PseudoRule("TC505", "index-select-out-of-bounds",
               "An `index_select`/`gather`/embedding index is out of bounds or not an integer", Severity.ERROR, """
        ## What it does
        At run time, before `torch.index_select`, `Tensor.index_select`, `torch.gather`,
        `Tensor.gather` and `F.embedding` (so `nn.Embedding`) run, checks that the index is an
        int64/int32 tensor and that every index lies within the indexed dimension, on every device.
        A bad index raises `torchcheck.IndexCheckError` (an `IndexError`) naming the sizes, the
        offending index and the user's line.

        ## Why is this bad?
        On GPU these ops are not bounds-checked on the host: an out-of-range index triggers an
        asynchronous device-side assert that surfaces at some later, unrelated line and leaves the
        CUDA context unusable (the seeds warn about exactly this for `index_select`). Checking
        first turns it into an immediate, precise error.

        ## Example
        ```python
        rows = torch.index_select(table, 0, torch.tensor([0, 5]))   # table has 5 rows
        ```

        ## Use instead
        ```python
        rows = torch.index_select(table, 0, torch.tensor([0, 4]))
        ```

        ## Fix safety
        Runtime only: no fix.
        """, runtime_check=True),
]


def runtime_only_rules() -> list[PseudoRule]:
    return RUNTIME_ONLY_RULES


def resolve_rule(selector: str):
    """A catalog entry by code (TC101) or name (softmax-before-cross-entropy)."""
    table = _by_selector()
    return table.get(selector) or table.get(selector.upper())


def _matches(selector: str, rule) -> bool:
    return selector == "ALL" or rule.code.startswith(selector.upper()) or selector == rule.name


def is_known_selector(selector: str) -> bool:
    return any(_matches(selector, rule) for rule in catalog())


def in_target_range(rule, version: tuple[int, ...] | None) -> bool:
    """Does the rule apply to a project on this torch version (None: unknown, so it does)?"""
    minimum = getattr(rule, "min_target_version", None)
    maximum = getattr(rule, "max_target_version", None)
    if version is None:
        return True
    return (minimum is None or version >= minimum) and (maximum is None or version < maximum)


def selected_rules(config) -> list[type[Rule]]:
    chosen = []
    for rule in all_rules():
        selected = any(_matches(s, rule) for s in config.select) if config.select else True
        if any(_matches(s, rule) for s in config.extend_select):
            selected = True
        if any(_matches(s, rule) for s in config.ignore):
            selected = False
        if not in_target_range(rule, config.target_version):
            selected = False
        if selected:
            chosen.append(rule)
    return chosen
