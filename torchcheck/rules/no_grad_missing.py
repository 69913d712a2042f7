from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import forward_receiver
from torchcheck.analysis.dataflow import GRAD_ON
from torchcheck.analysis.evaluation import EVAL_WORDS
from torchcheck.rule import FixSpec, Invalid, Replacement
from torchcheck.rules._eval_code import EvalCodeRule
from torchcheck.types import FixSafety


class NoGradMissing(EvalCodeRule):
    """
    ## What it does
    Finds evaluation code — a validation/test/inference function (by name, e.g. `validate`,
    `evaluate`, `test`, `predict`, `val_epoch`) or a loop over evaluation data (`val_loader`,
    `test_loader`) — that runs a model with autograd enabled: not under `torch.no_grad()` or
    `torch.inference_mode()`, not decorated with either (or with a project's own decorator named
    like them, `@smart_inference_mode()`), and not called only from places that are. Code that
    calls `backward()`/`step()`/`torch.autograd.grad`, or a function of the tree that does
    (meta-learning's `learner.adapt(loss)`), is training, not evaluation, and is skipped. So are a
    module's own methods and framework hooks (a method overriding its base class's) that nothing
    in the tree calls: their callers choose the grad mode.

    ## Why is this bad?
    With grad enabled, every forward pass records a graph and keeps activations for a backward
    that never comes: evaluation uses several times the memory (often an out-of-memory error on
    the validation set only) and runs slower. Results are the same, so nobody notices.

    ## Example
    ```python
    def evaluate(model, loader):
        model.eval()
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Use instead
    ```python
    @torch.no_grad()
    def evaluate(model, loader):
        model.eval()
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Options
    `eval-function-pattern`: the regular expression that names evaluation functions.

    ## Fix safety
    The fix decorates the evaluation function with `@torch.no_grad()`. It is unsafe: code in the
    function that needs gradients (saliency maps, test-time adaptation) would stop working.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    """

    code = "TC302"
    name = "no-grad-missing"
    summary = "Evaluation code runs the model with autograd enabled"
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Gradients are no longer available inside the function."
    needles = (EVAL_WORDS, ".backward(")  # evaluation code by name, or after a training loop

    def check_forward(self, scope, node: cst.Call) -> bool:
        analysis = self.ctx.analysis
        if analysis.grad_of_call(node, analysis.scope.get(node)) != GRAD_ON or self._model_api(node):
            return False
        fix = None
        if isinstance(scope, cst.FunctionDef):
            torch_names = self.ctx.imports.local_names_for("torch")
            if torch_names:
                fix = FixSpec("Decorate with `@torch.no_grad()`",
                              (Replacement(scope, f"@{torch_names[0]}.no_grad()\n", insert_before=True),))
        self.report(
            node,
            f"`{forward_receiver(node)}` runs in {self.describe(scope)} with autograd enabled, so every forward"
            " pass builds a graph that is never used; wrap it in `torch.no_grad()` (or `torch.inference_mode()`)",
            fix,
            related=self.evidence(scope, node),
        )
        return True

    def _model_api(self, node: cst.Call) -> bool:
        """`self(x)` or `self.encoder(x)` in a module's own method that nothing in the file calls: a method of
        the model's API (a framework hook such as `predict_step`, a library's `predict`), whose callers choose
        the grad mode."""
        info = self.ctx.analysis.scope.get(node)
        if info is None or info.cls is None or not (info.cls.is_module() or info.cls.method("forward")):
            return False  # (a class with a forward on a base from outside the tree, mmengine's `BaseModule`)
        names = info.param_names()
        receiver = forward_receiver(node) or ""
        return bool(names) and receiver.split(".")[0] == names[0] and not self.ctx.analysis.sites_of(info)

    VALID = [
        """
        import torch
        @torch.no_grad()
        def evaluate(model, loader):
            model.eval()
            return [model(x) for x in loader]
        """,
        """
        import torch.nn as nn
        class AutoEncoder(nn.Module):  # a library's model: its users call predict() as they see fit
            def __init__(self, encoder, decoder):
                super().__init__()
                self.encoder = encoder
                self.decoder = decoder
            def forward(self, x):
                return self.decoder(self.encoder(x))
            def predict(self, x):
                return self.decoder(self.encoder(x))
        """,
        """
        from mmengine.model import BaseModule  # a module base from outside the tree
        class Head(BaseModule):
            def __init__(self, decoder):
                super().__init__()
                self.decoder = decoder
            def forward(self, x):
                return self.decoder(x)
            def predict(self, x):
                return self.decoder(x).argmax(-1)
        """,
        """
        import torch.nn as nn
        from torch.autograd import grad
        class Learner(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(x)
            def adapt(self, loss, lr=0.1):  # meta-learning: a gradient step on the task's support set
                for p, g in zip(self.parameters(), grad(loss, list(self.parameters()))):
                    p.data -= lr * g
        learner = Learner()
        def evaluate(test_tasks):  # adapting to each test task needs autograd
            return [learner.adapt(learner(support).pow(2).mean()) or learner(query) for support, query in test_tasks]
        """,
        """
        import torch
        from .utils import smart_inference_mode  # the project's own no-grad decorator
        @smart_inference_mode()
        def evaluate(model, loader):
            model.eval()
            return [model(x) for x in loader]
        """,
        """
        import torch
        def validate(model, loader):
            model.eval()
            with torch.inference_mode():
                for x, y in loader:
                    out = model(x)
        """,
        """
        import torch
        def test(model, loader):
            for x, y in loader:
                out = model(x)
        def main(model, loader):
            model.eval()
            with torch.no_grad():
                test(model, loader)
        """,
        """
        def train_one_epoch(model, loader, optimizer):
            for x, y in loader:
                optimizer.zero_grad()
                model(x).sum().backward()
                optimizer.step()
        """,
        """
        import torch.nn as nn
        class Classifier(nn.Module):
            def forward(self, x):
                return x
            def predict_step(self, batch):  # the caller (a trainer, a user) chooses the grad mode
                return self(batch)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch
            def evaluate(model, loader):
                model.eval()
                for x, y in loader:
                    out = model(x)
            """,
            fixed="""
            import torch
            @torch.no_grad()
            def evaluate(model, loader):
                model.eval()
                for x, y in loader:
                    out = model(x)
            """,
        ),
        Invalid(
            """
            import torch
            model.eval()
            for images, labels in test_loader:
                outputs = model(images)
            """
        ),
    ]
