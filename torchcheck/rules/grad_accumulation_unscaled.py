from __future__ import annotations

import libcst as cst

from torchcheck.analysis.accumulation import (
    Gate,
    accumulation_gate,
    counter_gate,
    may_be_scaled,
    rescales,
    steps_used_elsewhere,
)
from torchcheck.analysis.calls import (
    is_backward,
    method_name,
    short_code,
    stepped_optimizer,
)
from torchcheck.analysis.dataflow import FunctionInfo
from torchcheck.analysis.imports import dotted_name
from torchcheck.rule import Invalid, Rule
from torchcheck.walk import SCOPE_TYPES, descendants

_NESTED = SCOPE_TYPES | {cst.For, cst.While}


def _nested(node: cst.CSTNode) -> bool:
    return type(node) in _NESTED


def _calls(body: cst.CSTNode, skip: cst.CSTNode | None = None):
    """The calls of `body`, not in nested loops or definitions (nor in `skip`)."""
    for node in descendants(body, prune=lambda n: _nested(n) or n is skip):
        if type(node) is cst.Call and node is not skip:
            yield node


def _targets(body: cst.CSTNode):
    for node in descendants(body, prune=lambda n: isinstance(n, (cst.FunctionDef, cst.ClassDef))):
        if type(node) is cst.Assign:
            yield from (t.target for t in node.targets)
        elif isinstance(node, (cst.AnnAssign, cst.AugAssign, cst.For)):
            yield node.target


class GradAccumulationUnscaled(Rule):
    """
    ## What it does
    Finds gradient accumulation written by hand that does not scale the loss: a loop calls
    `backward()` on every micro-batch but steps the optimizer only every k-th one
    (`if (i + 1) % k == 0: optimizer.step()`), and the tensor it backpropagates is never divided
    by k (or by anything else) on its way there, k is used nowhere else (not for the loss, not
    for the learning rate), and nothing rescales the gradients before the step.

    The runtime check of the same name (`torchcheck run`, `torchcheck.watch()`) sees the loop run:
    in two consecutive optimizer steps, the same line's mean loss was backpropagated k > 1 times
    as the loss function returned it, each after a new batch from the same DataLoader, with no
    `zero_grad()` between and the gradients untouched until the step. Scaled losses (and so the
    frameworks), `reduction="sum"`, separate losses of one batch (GAN, multi-task), and gradients
    rescaled or clipped before the step are not reported. A learning rate scaled by 1/k cannot be
    seen at run time: ignore the runtime check for such a loop.

    ## Why is this bad?
    `backward()` adds each micro-batch's gradient to `.grad`, so after k micro-batches the
    gradient is k times that of one batch: the step is k times larger than the learning rate was
    tuned for. Raising k to save memory silently raises the effective learning rate, and
    training diverges or lands somewhere worse. Dividing the loss by k makes the accumulated
    gradient the mean over the k micro-batches, the gradient of the large batch it stands for.

    ## Example
    ```python
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y)
        loss.backward()
        if (i + 1) % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```

    ## Use instead
    ```python
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y) / accumulation_steps
        loss.backward()
        if (i + 1) % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```
    Some authors keep the loss as it is and divide the learning rate by k instead; that is
    equivalent for SGD but not for Adam-style optimizers, which normalise the gradient's scale
    away (there an unscaled loss mostly changes `eps`'s and weight decay's relative weight). A
    `k` used in any arithmetic (`lr / k`) is taken as accounted for and not reported. Frameworks
    that scale for you give nothing: Accelerate's `accelerator.accumulate` and
    `accelerator.backward`, Lightning's `accumulate_grad_batches`, the transformers `Trainer`.

    ## Fix safety
    No fix: dividing the loss changes the effective learning rate of a tuned setup.

    ## References
    - https://pytorch.org/docs/stable/notes/amp_examples.html#gradient-accumulation
    """

    code = "TC204"
    name = "grad-accumulation-unscaled"
    summary = "Gradient accumulation sums k micro-batch gradients without dividing the loss by k"
    runtime_check = True
    needles = ("backward",)

    def visit_For(self, node: cst.For) -> None:
        self._check(node)

    def visit_While(self, node: cst.While) -> None:
        self._check(node)

    def _check(self, loop) -> None:
        gate = self._step_gate(loop.body)
        if gate is None:
            return
        gate_if, found = gate
        if self._clears_every_iteration(loop.body, gate_if) or self._framework_accumulates(loop.body):
            return
        scope = self.ctx.functions[-1] if self.ctx.functions else self.ctx.module
        if rescales(gate_if.body) or steps_used_elsewhere(self._steps_scope(found, scope), found) is not None:
            return
        for call in _calls(loop.body, skip=gate_if):
            if is_backward(self.ctx, call):
                self._check_backward(loop, call, self.ctx.analysis, scope, call, gate_if, found)
                continue
            callee = self.ctx.value(call.func)  # `loss = train_step(batch)`: a step function that backpropagates
            if callee.kind != "function" or not isinstance(callee.info, FunctionInfo):
                continue
            info = callee.info
            if self._clears_every_iteration(info.node.body, None):
                return
            for inner in _calls(info.node.body):
                if is_backward(info.analysis, inner):
                    self._check_backward(loop, inner, info.analysis, info.node, call, gate_if, found)

    def _steps_scope(self, gate: Gate, scope: cst.CSTNode) -> cst.CSTNode:
        """Where k may be used: the function, for its own parameter or local; else the whole file."""
        if isinstance(gate.steps, cst.Name) and isinstance(scope, cst.FunctionDef):
            info = self.ctx.analysis.function_of_node.get(scope)
            local = any(type(n) is cst.Name and n.value == gate.steps.value
                        for target in _targets(scope.body) for n in (target, *descendants(target)))
            if info is not None and (gate.steps.value in info.param_names() or local):
                return scope
        return self.ctx.module

    def _step_gate(self, body) -> tuple[cst.If, Gate] | None:
        """The `if (i + 1) % k == 0:` of the loop (not nested in another loop) that steps an optimizer."""
        for node in descendants(body, prune=_nested):
            if type(node) is cst.If:
                gate = accumulation_gate(node.test) or counter_gate(node, body)
                if gate is not None and any(self._steps(call) for call in _calls(node.body)):
                    return node, gate
        return None

    def _steps(self, call: cst.Call) -> bool:
        if stepped_optimizer(self.ctx, call) is not None:
            return True
        callee = self.ctx.value(call.func)
        return callee.kind == "function" and isinstance(callee.info, FunctionInfo) and any(
            stepped_optimizer(callee.info.analysis, inner) is not None for inner in _calls(callee.info.node.body))

    def _clears_every_iteration(self, body, gate_if: cst.If | None) -> bool:
        """Gradients cleared outside the gate: then nothing accumulates."""
        for node in descendants(body, prune=lambda n: _nested(n) or n is gate_if):
            if type(node) is cst.Call and method_name(node) == "zero_grad":
                return True
            if type(node) is cst.Assign and any(
                    isinstance(t.target, cst.Attribute) and t.target.attr.value == "grad" for t in node.targets):
                return True
        return False

    def _framework_accumulates(self, body) -> bool:
        """`with accelerator.accumulate(model):`: the framework scales and gates itself."""
        return any(isinstance(node, cst.WithItem) and isinstance(node.item, cst.Call)
                   and method_name(node.item) == "accumulate" for node in descendants(body))

    def _check_backward(self, loop, call: cst.Call, analysis, scope, anchor: cst.Call, gate_if: cst.If, gate: Gate):
        """`anchor`: the call in the loop that runs `call` (itself, or the step function holding it)."""
        if call.args or not isinstance(call.func, cst.Attribute):
            return  # `accelerator.backward(loss)`, `fabric.backward(loss)`: the framework's own, which may scale
        tensor = call.func.value
        if isinstance(tensor, cst.Call) and method_name(tensor) == "scale" and len(tensor.args) == 1:
            tensor = tensor.args[0].value  # `scaler.scale(loss).backward()`
        if may_be_scaled(analysis, tensor, scope):
            return
        steps = short_code(self.ctx, gate.steps, 30)
        here = analysis is self.ctx.analysis
        backward = short_code(self.ctx, call, 40) if here else f"{dotted_name(call.func) or 'backward'}()"
        self.report(
            call if here else anchor,
            f"`{backward}` runs on every micro-batch but the optimizer steps only when"
            f" `{short_code(self.ctx, gate.test, 40)}`, and the loss is never divided by `{steps}`: the accumulated"
            f" gradient is `{steps}` times a batch's, and so is the effective learning rate; divide the loss by"
            f" `{steps}` before backward()",
            related=[(gate_if, "the optimizer steps here, every k-th micro-batch"), (loop, "the accumulation loop")],
        )

    VALID = [
        """
        for i, (x, y) in enumerate(loader):
            loss = criterion(model(x), y) / accumulation_steps
            loss.backward()
            if (i + 1) % accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
        """,
        """
        for i, (x, y) in enumerate(loader):
            loss = criterion(model(x), y)
            if accumulation_steps > 1:
                loss = loss / accumulation_steps
            loss.backward()
            if (i + 1) % accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
        """,
        """
        for i, batch in enumerate(loader):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
        """,
        """
        import torch
        optimizer = torch.optim.SGD(model.parameters(), lr=base_lr / accumulation_steps)
        for i, (x, y) in enumerate(loader):
            criterion(model(x), y).backward()
            if (i + 1) % accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
        """,
        """
        for i, (x, y) in enumerate(loader):
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            if i % log_every == 0:
                optimizer.step()
        """,
    ]
    INVALID = [
        Invalid(
            """
            for i, (x, y) in enumerate(loader):
                loss = criterion(model(x), y)
                loss.backward()
                if (i + 1) % accumulation_steps == 0:
                    optimizer.step()
                    optimizer.zero_grad()
            """
        ),
        Invalid(
            """
            step = 0
            for batch in loader:
                outputs = model(**batch)
                loss = outputs.loss
                scaler.scale(loss).backward()
                step += 1
                if step % args.grad_accum == 0:
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad()
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            criterion = nn.MSELoss()
            accumulated = 0
            for x, y in loader:
                criterion(model(x), y).backward()
                accumulated += 1
                if accumulated == accum_steps:
                    optimizer.step()
                    optimizer.zero_grad()
                    accumulated = 0
            """
        ),
    ]
