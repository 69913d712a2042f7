from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import (
    is_backward,
    method_name,
    short_code,
    source_evidence,
    stepped_optimizer,
)
from torchcheck.analysis.imports import dotted_name, iter_statements
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety
from torchcheck.walk import descendants


def _operands(node: cst.CSTNode) -> set[str]:
    """The names an accumulated expression adds as they are: `loss`, `out` in `out * n`; not `loss.item()`,
    nor the divisor `n` in `loss / n`."""
    if isinstance(node, cst.BinaryOperation):
        if isinstance(node.operator, (cst.Divide, cst.FloorDivide)):
            return _operands(node.left)
        return _operands(node.left) | _operands(node.right)
    name = dotted_name(node)
    return {name} if name else set()


def _names_in(node: cst.CSTNode) -> set[str]:
    return {dotted_name(n) for n in (node, *descendants(node)) if type(n) in (cst.Name, cst.Attribute)} - {None}


def _backward_roots(ctx, scope: cst.CSTNode) -> set[str]:
    """The names back-propagated directly in `scope`: `loss` in `loss.backward()`, `output` in
    `output["loss"].backward()` and in `scaler.scale(output.loss).backward()`."""
    roots: set[str] = set()
    for node in descendants(scope):
        if type(node) is cst.Call and (method_name(node) == "backward" or is_backward(ctx, node)):
            parts = [node.func.value] if type(node.func) is cst.Attribute else []
            for part in parts + [a.value for a in node.args]:
                roots |= _names_in(part)
    return roots


def _backpropagated_names(ctx, scope: cst.CSTNode, roots: set[str]) -> set[str]:
    """Every name whose value flows into `roots` in `scope`; for the names back-propagated there,
    `loss = torch.stack(terms).sum(); loss.backward()` back-propagates `terms` too."""
    sources: dict[str, set[str]] = {}
    for node in descendants(scope):
        if type(node) in (cst.Assign, cst.AugAssign, cst.AnnAssign) and node.value is not None:
            targets = [t.target for t in node.targets] if type(node) is cst.Assign else [node.target]
            used = _names_in(node.value)
            for target in targets:
                container = target.value if isinstance(target, cst.Subscript) else target  # `losses["mel"] = mel`
                for name in _target_names(target) or [dotted_name(container)]:
                    if name:
                        sources.setdefault(name, set()).update(used)
    names, frontier = set(), list(roots)
    while frontier:
        name = frontier.pop()
        if name not in names:
            names.add(name)
            frontier.extend(sources.get(name, ()))
    return names


def _returned_names(function: cst.FunctionDef) -> set[str]:
    return set().union(*(_names_in(n.value) for n in descendants(function) if isinstance(n, cst.Return) and n.value))


def _assigned_names(function: cst.FunctionDef) -> set[str]:
    names = {p.name.value for p in function.params.params}
    for node in descendants(function):
        if isinstance(node, cst.AssignTarget):
            names.update(_target_names(node.target))
        elif isinstance(node, (cst.AnnAssign, cst.For)):
            names.update(_target_names(node.target))
    return names


def _with_method(text: str, added: cst.BaseExpression, method: str) -> str:
    atom = isinstance(added, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
    return f"{text}.{method}()" if atom else f"({text}).{method}()"


def _target_names(target: cst.CSTNode) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for element in target.elements for n in _target_names(element.value)]
    return []


def _detached_names(loop: cst.For | cst.While) -> set[str]:
    """Names the loop rebinds to their own `.detach()` or `.item()` (`loss = loss.detach()` after its
    `backward()`): what they hold afterwards has no graph."""
    return {name for node in descendants(loop.body) if type(node) is cst.Assign and len(node.targets) == 1
            and type(node.value) is cst.Call and method_name(node.value) in ("detach", "item")
            and (name := dotted_name(node.targets[0].target)) is not None and name == dotted_name(node.value.func.value)}


def _reset_with_each_step(ctx, loop: cst.For | cst.While, name: str) -> bool:
    """`running_loss = 0` in a block of the loop that also steps an optimizer: the sum spans the
    micro-batches of one step (a gradient-accumulation window), not the whole run."""
    blocks = [loop.body, *(n for n in descendants(loop.body) if type(n) is cst.IndentedBlock)]
    for block in blocks:
        resets = any(type(small) is cst.Assign and len(small.targets) == 1 and dotted_name(small.targets[0].target) == name
                     and type(small.value) in (cst.Integer, cst.Float)
                     for line in block.body if type(line) is cst.SimpleStatementLine for small in line.body)
        if resets and any(type(n) is cst.Call and stepped_optimizer(ctx, n) is not None for n in descendants(block)):
            return True
    return False


def _rebound_each_iteration(loop: cst.For | cst.While, name: str) -> bool:
    """`self.loss = self._make_empty_loss()` in the loop's own body: what is added to the name is
    dropped at the next iteration."""
    return any(type(small) is cst.Assign and any(dotted_name(t.target) == name for t in small.targets)
               and name not in _names_in(small.value) for small in iter_statements(loop.body))


class LossAccumulatedWithoutItem(Rule):
    """
    ## What it does
    Finds loss tensors that still hold their autograd graph being kept past their training step
    inside a loop: `total += loss`, `total = total + loss`, `losses.append(loss)`,
    `history[k] = loss`.

    ## Why is this bad?
    A loss tensor references the whole graph of the forward pass that made it. Keeping it (or a
    running sum of such tensors) keeps every step's graph and activations alive: memory grows each
    iteration until the process runs out, and the running sum's own graph grows too. The seeds'
    MNIST tutorial does this with `losslst.append(loss)`.

    ## Example
    ```python
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss
    ```

    ## Use instead
    ```python
        running_loss += loss.item()          # a Python float
        losses.append(loss.detach())         # where a tensor is needed
    ```
    Summing loss terms and then calling `backward()` on the sum (one graph, used once) is
    correct and not reported, and so is accumulating under `torch.no_grad()`, a sum reset in the
    block that steps the optimizer (it spans one step's micro-batches), a sum assigned afresh in
    the loop's own body (`self.loss = self.empty_loss()`: it spans one iteration), and a loss
    detached after its `backward()` in the loop.

    ## Fix safety
    The fix adds `.item()` for sums and `.detach()` for containers. It is unsafe: the
    accumulator's type changes (float instead of tensor) for code that reads it later.

    ## References
    - https://pytorch.org/docs/stable/notes/faq.html#my-model-reports-cuda-runtime-error-2-out-of-memory
    """

    code = "TC202"
    name = "loss-accumulated-without-item"
    summary = "A loss tensor that still holds its graph is accumulated across iterations"
    fix_safety = FixSafety.UNSAFE
    fix_reason = "The accumulator becomes a float (or a detached tensor), which later code may not expect."
    runtime_check = True
    needles = ("loss", "Loss")

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.loops: list[list] = [[]]  # the loops enclosing the node, per function
        self._backward_names: dict = {}
        self._assigned: dict = {}
        self._returned: dict = {}

    def visit_For(self, node) -> None:
        self.loops[-1].append(node)

    def leave_For(self, node) -> None:
        self.loops[-1].pop()

    def visit_While(self, node) -> None:
        self.loops[-1].append(node)

    def leave_While(self, node) -> None:
        self.loops[-1].pop()

    def visit_FunctionDef(self, node) -> None:
        self.loops.append([])

    def leave_FunctionDef(self, node) -> None:
        self.loops.pop()

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        if isinstance(node.operator, (cst.AddAssign, cst.SubtractAssign)):
            self._check(node.target, node.value, "item")

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) != 1:
            return
        target = node.targets[0].target
        value = node.value
        if isinstance(target, cst.Subscript):
            self._check(target.value, value, "detach")
        elif isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Add):
            if dotted_name(value.left) == dotted_name(target) and dotted_name(target):
                self._check(target, value.right, "item")

    def visit_Call(self, node: cst.Call) -> None:
        if method_name(node) == "append" and len(node.args) == 1 and not node.args[0].keyword:
            self._check(node.func.value, node.args[0].value, "detach")

    def _check(self, accumulator: cst.CSTNode, added: cst.BaseExpression, method: str) -> None:
        if not self.loops[-1]:
            return
        if isinstance(accumulator, cst.Subscript):
            accumulator = accumulator.value  # `totals[name] += loss`
        name = dotted_name(accumulator)
        if name is None:
            return
        loop = self.loops[-1][-1]
        value = self.ctx.value(added)
        graph = self.ctx.analysis.has_graph(value, added)
        already_backpropagated = value.backpropagated and graph is True
        backpropagated = self._backward_facts(self.ctx.functions[-1] if self.ctx.functions else self.ctx.module)[1]
        # A tensor on which this iteration calls backward() carries a graph, whatever produced it.
        roots = self._backward_facts(loop)[0]
        backward_evidence = graph is not False and bool(_operands(added) & roots)
        if not backward_evidence and not already_backpropagated and (not value.is_loss or graph is not True):
            return
        if name in backpropagated or _reset_with_each_step(self.ctx, loop, name) or _rebound_each_iteration(loop, name):
            return
        if not backpropagated and not already_backpropagated and not self._outlives_function(name):
            return  # loss terms collected in a helper and handed back for a backward elsewhere
        if _operands(added) and _operands(added) <= _detached_names(loop) and not self._outlives_function(name):
            return  # back-propagated here and detached, or else handed back for a backward elsewhere
        shown = short_code(self.ctx, added)
        self.report(
            added,
            f"`{shown}` still holds its autograd graph and is kept in `{name}` across iterations, so every step's"
            f" graph stays in memory; use `{_with_method(shown, added, method)}`",
            FixSpec(f"Use `.{method}()`", (Replacement(added, _with_method(self.ctx.code(added), added, method)),)),
            related=[*source_evidence(self.ctx, added), (loop, f"the loop that adds to `{name}`")],
        )

    def _outlives_function(self, name: str) -> bool:
        """`self.history`, a name the function never assigns (a global such as the seeds' `losslst`), or
        a local that the function does not return (a running total it prints or saves)."""
        if not self.ctx.functions:
            return True
        head = name.split(".")[0]
        function = self.ctx.functions[-1]
        if "." in name and function.params.params and head == function.params.params[0].name.value:
            return True
        return head not in self._assigned_names(function) or head not in self._returned_flow(function)

    def _returned_flow(self, function: cst.FunctionDef) -> set[str]:
        """The names whose values flow into what the function returns: `total_loss` and, through
        `total_loss += visual_total`, `visual_total`."""
        if function not in self._returned:
            self._returned[function] = _backpropagated_names(self.ctx, function, _returned_names(function))
        return self._returned[function]

    def _assigned_names(self, function: cst.FunctionDef) -> set[str]:
        if function not in self._assigned:
            self._assigned[function] = _assigned_names(function)
        return self._assigned[function]

    def _backward_facts(self, scope: cst.CSTNode) -> tuple[set[str], set[str]]:
        """The names back-propagated directly in `scope`, and all that flow into them."""
        if scope not in self._backward_names:
            roots = _backward_roots(self.ctx, scope)
            self._backward_names[scope] = roots, _backpropagated_names(self.ctx, scope, roots)
        return self._backward_names[scope]

    VALID = [
        """
        import numpy as np
        import torch.nn.functional as F
        def fit(model, loader, optimizer, history):
            for x, y in loader:
                loss = F.mse_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss = np.mean([loss.item()])  # the name now holds a numpy float
                history.append(loss)
        """,
        """
        import torch.nn.functional as F
        class Strategy:  # the loss is rebuilt at each iteration: its terms never outlive one step
            def backward(self):
                self.loss.backward()
            def training_epoch(self):
                for self.batch in self.loader:
                    self.optimizer.zero_grad()
                    self.loss = self.empty_loss()
                    out = self.model(self.batch[0])
                    self.loss += F.cross_entropy(out, self.batch[1])
                    self.loss += self.alpha * F.mse_loss(out, self.batch[2])
                    self.backward()
                    self.optimizer.step()
        """,
        """
        import torch.nn.functional as F
        def chunked_loss(score, chunks, labels, with_backward):  # back-propagated chunk by chunk, then detached
            losses = []
            for chunk, target in zip(chunks, labels):
                chunk_loss = F.cross_entropy(score(chunk), target)
                if with_backward:
                    chunk_loss.backward()
                    chunk_loss = chunk_loss.detach()
                losses.append(chunk_loss)
            return sum(losses)
        """,
        """
        import torch.nn as nn
        class SpeechLoss(nn.Module):  # per-utterance terms, summed into the dict it returns
            def __init__(self):
                super().__init__()
                self.mel = nn.L1Loss()
            def forward(self, mel_out, mel_target, lengths):
                for i in range(len(lengths)):
                    if i == 0:
                        mel_loss = self.mel(mel_out[i, : lengths[i]], mel_target[i, : lengths[i]])
                    else:
                        mel_loss = mel_loss + self.mel(mel_out[i, : lengths[i]], mel_target[i, : lengths[i]])
                losses = {}
                losses["mel_loss"] = mel_loss / len(lengths)
                losses["total_loss"] = sum(losses.values())
                return losses
        """,
        """
        import torch.distributed as dist
        def train(model, loader, optimizer, loss_fn, accumulation_steps, log):
            running_loss = 0
            for step, (x, y) in enumerate(loader):
                loss = loss_fn(model(x), y) / accumulation_steps
                running_loss += loss  # summed over one optimizer step's micro-batches, for the log
                loss.backward()
                if (step + 1) % accumulation_steps == 0:
                    optimizer.step()
                    optimizer.zero_grad()
                    dist.all_reduce(running_loss)
                    log(running_loss.item())
                    running_loss = 0
        """,
        """
        import torch
        import torch.nn as nn
        class Pretraining(nn.Module):
            def __init__(self):
                super().__init__()
                self.losses = {"ce": nn.CrossEntropyLoss(), "l2": nn.MSELoss()}
            def forward(self, outputs, labels):
                total = torch.zeros(())
                task_total = torch.zeros(())
                for name, kind in (("cls", "ce"), ("box", "l2")):
                    task_total += self.losses[kind](outputs[name], labels[name])
                total += task_total
                return total
        """,
        """
        import torch.nn.functional as F
        def compute_loss(preds, targets):
            terms = []
            for p, t in zip(preds, targets):
                terms.append(F.smooth_l1_loss(p, t, reduction="sum"))
            return sum(terms)
        """,
        """
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        """,
        """
        import torch.nn as nn
        criterion = nn.CrossEntropyLoss()
        for x, y in loader:
            optimizer.zero_grad()
            loss = 0
            for head in model(x):
                loss += criterion(head, y)
            loss.backward()
            optimizer.step()
        """,
        """
        import torch, torch.nn as nn
        criterion = nn.CrossEntropyLoss()
        def validate(model, loader):
            total = 0
            with torch.no_grad():
                for x, y in loader:
                    total += criterion(model(x), y)
            return total
        """,
        """
        import torch
        import torch.nn.functional as F
        def finish_episode(model, optimizer, saved_actions, returns):
            policy_losses, value_losses = [], []
            for (log_prob, value), R in zip(saved_actions, returns):
                policy_losses.append(-log_prob * (R - value.item()))
                value_losses.append(F.smooth_l1_loss(value, torch.tensor([R])))
            optimizer.zero_grad()
            loss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
            loss.backward()
            optimizer.step()
        """,
        """
        import torch, torch.nn as nn
        criterion = nn.MSELoss()
        for x, y in loader:
            losses = []
            for chunk in x.chunk(4):
                losses.append(criterion(model(chunk), y))
            torch.stack(losses).mean().backward()
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            class Module:
                def training_step(self, batch):
                    for x, y in batch:
                        loss = F.cross_entropy(self.net(x), y)
                        self.history.append(loss)
                    return loss
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            criterion = nn.CrossEntropyLoss()
            running_loss = 0.0
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                running_loss += loss
            """,
            fixed="""
            import torch.nn as nn
            criterion = nn.CrossEntropyLoss()
            running_loss = 0.0
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                running_loss += loss.item()
            """,
        ),
        Invalid(
            """
            import torch
            criterion = torch.nn.CrossEntropyLoss()
            losslst = []
            def train(epoch):
                for batch_idx, data in enumerate(train_loader, 0):
                    inputs, labels = data
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    losslst.append(loss)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            """
        ),
    ]
