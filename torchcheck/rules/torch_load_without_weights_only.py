from __future__ import annotations

import re

import libcst as cst

from torchcheck.analysis.calls import keyword_arg, with_args
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity


class TorchLoadWithoutWeightsOnly(Rule):
    """
    ## What it does
    Finds `torch.load(...)` calls that do not pass `weights_only=`, in projects whose target torch
    version is older than 2.6 (read from `[tool.torchcheck] target-version`, else from the lower
    bound of the project's torch requirement; unknown counts as older).

    ## Why is this bad?
    Before torch 2.6, `torch.load` unpickles by default: loading a checkpoint runs whatever code the
    file's author put in it. A model downloaded from a hub, a colleague's checkpoint or a file in a
    shared bucket can take over the machine. From 2.4 torch warns about it; from 2.6,
    `weights_only=True` is the default. A project that still supports older torch must say it.

    ## Example
    ```python
    state = torch.load("model.pt", map_location="cpu")
    ```

    ## Use instead
    ```python
    state = torch.load("model.pt", map_location="cpu", weights_only=True)
    ```
    Pass `weights_only=False` explicitly only for a file you trust that holds arbitrary objects.
    A project declaring `torch>=2.6` (or `target-version = "2.6"`) gets no finding, and neither
    does the `torch` package's own code, which always runs on its own default.

    ## Fix safety
    The fix adds `weights_only=True`. It is unsafe: a checkpoint that holds arbitrary Python
    objects (an optimizer built from a custom class, a pickled config) stops loading.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.load.html
    - https://pytorch.org/docs/stable/notes/serialization.html#weights-only
    """

    code = "TC601"
    name = "torch-load-without-weights-only"
    summary = "`torch.load` without `weights_only=` unpickles arbitrary code on torch < 2.6"
    severity = Severity.WARNING
    fix_safety = FixSafety.UNSAFE
    fix_reason = "A checkpoint holding arbitrary Python objects stops loading."
    max_target_version = (2, 6)
    # `torch.load`, or a `load(` call; written "load" first, so that a file's text is scanned fast
    needles = (re.compile(r"load(?:(?<=torch\.load)|\((?<![\w.]load\())"),)

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.qualname(node.func) != "torch.load":
            return
        if self.ctx.module_name.split(".")[0] == "torch":
            return  # torch's own code runs on the torch it is part of: the default there is its own
        if any(arg.keyword is not None and arg.keyword.value == "weights_only" or arg.star == "**" for arg in node.args):
            return
        self.report(
            node,
            "`torch.load` without `weights_only=` unpickles the file, running any code it holds (the default"
            " before torch 2.6); pass `weights_only=True`",
            FixSpec("Pass `weights_only=True`",
                    (Replacement(node, self.ctx.code(with_args(node, [*node.args, keyword_arg("weights_only", "True")]))),)),
        )

    VALID = [
        """
        import torch
        state = torch.load("model.pt", map_location="cpu", weights_only=True)
        """,
        """
        import torch
        def restore(path, **options):
            return torch.load(path, **options)
        """,
        """
        import json
        config = json.load(open("config.json"))
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch
            state = torch.load("model.pt", map_location="cpu")
            """,
            fixed="""
            import torch
            state = torch.load("model.pt", map_location="cpu", weights_only=True)
            """,
        ),
        Invalid(
            """
            from torch import load
            model.load_state_dict(load(checkpoint_path))
            """
        ),
    ]
