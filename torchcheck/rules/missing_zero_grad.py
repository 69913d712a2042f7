from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import (
    is_backward,
    is_optimizer,
    method_name,
    optimizer_key,
    stepped_optimizer,
)
from torchcheck.analysis.dataflow import FunctionInfo
from torchcheck.analysis.imports import dotted_name
from torchcheck.rule import Invalid, Rule
from torchcheck.walk import SCOPE_TYPES, descendants

_CALL_DEPTH = 3
# Library helpers that clear the gradients of the parameters they are given: `zero_grads(params)`.
_CLEARING_HELPERS = {"zero_grad", "zero_grads", "zero_gradients", "clear_grad", "clear_grads"}


class _LoopEvents:
    """Backward calls, optimizer steps and gradient clears in a loop body, following calls into
    functions of the linted tree (not into nested function definitions, which run elsewhere)."""

    def __init__(self, ctx, depth: int = 0, seen: set | None = None) -> None:
        self.ctx = ctx
        self.depth = depth
        self.seen = seen if seen is not None else set()
        self.backward: cst.Call | None = None  # the first backward() call
        self.steps: list[tuple[cst.Call, cst.BaseExpression]] = []  # (call, optimizer), lexically in the loop
        self.cleared: set[str] = set()  # optimizers whose zero_grad() is called
        self.cleared_models: set[str] = set()  # `netD` in `netD.zero_grad()`, lexically in the loop
        self.clears_any = False  # p.grad = None, a model cleared in a called function: whatever they cover
        self.created: set[str] = set()  # optimizers built inside the loop: a fresh one each iteration
        self.called_steps: list[tuple[cst.Call, FunctionInfo]] = []  # steps in the functions it calls

    def scan(self, body: cst.CSTNode) -> _LoopEvents:
        for node in descendants(body, prune=_nested):
            if type(node) is cst.Call:
                self.visit_Call(node)
            elif type(node) is cst.Assign:
                self.visit_Assign(node)
        return self

    def visit_Call(self, node: cst.Call) -> None:
        name = method_name(node)
        if is_backward(self.ctx, node):
            self.backward = self.backward or node
        elif name == "zero_grad":
            cleared = node.func.value
            if is_optimizer(self.ctx, cleared):
                self.cleared.add(optimizer_key(cleared) or "")
            elif dotted_name(cleared) and not self.depth:
                self.cleared_models.add(dotted_name(cleared))
            else:
                self.clears_any = True
        elif name in ("zero_", "detach_", "requires_grad_") and _is_grad_expr(node.func.value):
            self.clears_any = True
        elif (dotted_name(node.func) or "").rsplit(".", 1)[-1] in _CLEARING_HELPERS:
            self.clears_any = True
        elif name == "step":
            optimizer = stepped_optimizer(self.ctx, node)
            if optimizer is not None and not _has_closure(node):
                self.steps.append((node, optimizer))
        self._follow(node)

    def _follow(self, node: cst.Call) -> None:
        if self.depth >= _CALL_DEPTH:
            return
        value = self.ctx.value(node.func)
        info = value.info if value.kind == "function" else None
        if not isinstance(info, FunctionInfo) or info in self.seen:
            return
        self.seen.add(info)
        inner = _LoopEvents(info.analysis, self.depth + 1, self.seen).scan(info.node.body)
        self.backward = self.backward or inner.backward
        self.called_steps += [(call, info) for call, _ in inner.steps] + inner.called_steps
        self.cleared |= inner.cleared
        self.clears_any |= inner.clears_any or bool(inner.cleared_models)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if _is_grad_expr(target.target) and _is_none(node.value):
                self.clears_any = True
            elif isinstance(node.value, cst.Call) and self.ctx.value(node.value).kind == "optimizer":
                self.created.add(dotted_name(target.target) or "")


def _called_name(call: cst.Call) -> str | None:
    func = call.func
    return func.value if isinstance(func, cst.Name) else func.attr.value if isinstance(func, cst.Attribute) else None


def _nested(node: cst.CSTNode) -> bool:
    return type(node) in SCOPE_TYPES


def _is_grad_expr(node: cst.CSTNode) -> bool:
    while type(node) is cst.Attribute:
        if node.attr.value == "grad":
            return True
        node = node.value
    return False


def _is_none(node: cst.CSTNode) -> bool:
    return type(node) is cst.Name and node.value == "None"


def _has_closure(node: cst.Call) -> bool:
    return any(arg.keyword is None or arg.keyword.value == "closure" for arg in node.args)


class MissingZeroGrad(Rule):
    """
    ## What it does
    Finds a training loop (`for` or `while`) that calls `backward()` and steps an optimizer but
    never clears that optimizer's gradients: no `optimizer.zero_grad()`, `model.zero_grad()`,
    `p.grad = None` or `p.grad.zero_()` anywhere in the loop (including in the functions it
    calls).

    ## Why is this bad?
    `backward()` *adds* to `.grad`. Without clearing, every step uses the sum of all gradients
    so far: the effective learning rate grows each step and training diverges or stalls. There is
    no error.

    ## Example
    ```python
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```
    Deliberate gradient accumulation, which clears after every k-th step inside the loop, is
    correct and not reported; so is a closure passed to `optimizer.step(closure)` (LBFGS).
    Clearing only once before the loop is reported.

    ## Fix safety
    No fix: where the clear belongs depends on whether gradients are accumulated.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.zero_grad.html
    """

    code = "TC201"
    name = "missing-zero-grad"
    summary = "A training loop steps an optimizer without ever clearing its gradients"
    runtime_check = True
    needles = ("backward",)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._steppers: set[str] | None = None

    def visit_For(self, node: cst.For) -> None:
        self._check(node)

    def visit_While(self, node: cst.While) -> None:
        self._check(node)

    def _check(self, loop) -> None:
        if not any(type(n) is cst.Call and (method_name(n) == "step" or _called_name(n) in self._stepping_functions())
                   for n in descendants(loop.body, prune=_nested)):
            return  # no step in the loop or in a function of this file it calls: no need to analyse it
        events = _LoopEvents(self.ctx).scan(loop.body)
        if not events.backward:
            return
        self._report_uncleared(events, loop, "loop", "runs in a loop that calls backward() but never clears")
        if not (events.cleared or events.cleared_models or events.clears_any):
            for call, function in events.called_steps:
                if function.analysis is self.ctx.analysis:
                    self.report(
                        call,
                        f"`{dotted_name(call.func) or 'step'}()` runs in `{function.name}()`, which a loop calls"
                        " with backward() but nothing in the loop ever clears gradients, so they accumulate"
                        " across iterations; call `zero_grad()` each step",
                        related=[(loop, f"the loop that calls `{function.name}()` and never clears gradients"),
                                 (events.backward, "backward() adds to the gradients here")],
                    )

    def _stepping_functions(self) -> set[str]:
        """Names of the functions of this file that call `.step(...)`."""
        if self._steppers is None:
            self._steppers = {info.name for info in self.ctx.analysis.all_functions
                              if any(type(n) is cst.Call and method_name(n) == "step"
                                     for n in descendants(info.node.body, prune=_nested))}
        return self._steppers

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        """A training-step function that clears some gradients itself owns the clearing: an optimizer
        it steps and never clears accumulates (`netG.zero_grad()` but no `netD.zero_grad()`)."""
        called = {method_name(n) for n in descendants(node.body, prune=_nested) if type(n) is cst.Call}
        if not {"step", "zero_grad"} <= called:
            return  # no need to analyse a function that does not both step and clear
        events = _LoopEvents(self.ctx).scan(node.body)
        if events.backward and (events.cleared or events.cleared_models):
            self._report_uncleared(events, node, "step function",
                                   "runs after backward() in a step function that clears other gradients but never clears")

    def _report_uncleared(self, events: _LoopEvents, scope: cst.CSTNode, kind: str, where: str) -> None:
        if events.clears_any:
            return
        for call, optimizer in events.steps:
            name = optimizer_key(optimizer) or "optimizer"
            if name in events.cleared or name in events.created or self._model_cleared(optimizer, events.cleared_models):
                continue
            self.report(
                call,
                f"`{dotted_name(call.func) or 'step'}()` {where} `{name}`'s gradients, so they accumulate across"
                f" iterations; call `{name}.zero_grad()` each step",
                related=[(scope, f"the {kind}, which never calls `{name}.zero_grad()`"),
                         (events.backward, "backward() adds to the gradients here")],
            )

    def _model_cleared(self, optimizer: cst.BaseExpression, models: set[str]) -> bool:
        """Did `model.zero_grad()` clear what this optimizer updates? Where its model is unknown, any
        model cleared may be it."""
        if not models:
            return False
        owner = self._updated_model(optimizer)
        if owner is None:
            return True
        return any(owner == m or owner.startswith(m + ".") or m.startswith(owner + ".") for m in models)

    def _updated_model(self, optimizer: cst.BaseExpression) -> str | None:
        """`netD` for `optim.Adam(netD.parameters())`; `self.disc` for `self.disc.optimizer`, an
        optimizer the discriminator built over its own parameters."""
        owner = self.ctx.value(optimizer).source
        holder = dotted_name(optimizer.value) if isinstance(optimizer, cst.Attribute) else None
        if owner is None or holder in (None, "self") or not (owner == "self" or owner.startswith("self.")):
            return owner
        if self.ctx.value(optimizer.value).kind == "model":
            return holder + owner[len("self"):]
        return None  # built in another object's scope: its `self` is not ours

    VALID = [
        """
        import torch
        from pyro.infer.util import zero_grads  # a library helper that clears the given parameters
        optimizer = torch.optim.Adam(params)
        for step in range(100):
            zero_grads(params)
            loss_fn(params).backward()
            optimizer.step()
        """,
        """
        def train_step(model, opt, criterion, x, y):
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()
        for x, y in loader:
            optimizer.zero_grad()
            train_step(model, optimizer, criterion, x, y)
        """,
        """
        import torch.optim as optim
        def train_step(netD, netG, lossD, lossG):
            optD = optim.Adam(netD.parameters())
            optG = optim.Adam(netG.parameters())
            netD.zero_grad()
            lossD.backward()
            optD.step()
            netG.zero_grad()
            lossG.backward()
            optG.step()
        """,
        """
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
        """
        optimizer.zero_grad()
        for i, (x, y) in enumerate(loader):
            loss = criterion(model(x), y) / accumulation_steps
            loss.backward()
            if (i + 1) % accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
        """,
        """
        for x, y in loader:
            netD.zero_grad()
            criterion(netD(x), y).backward()
            optimizerD.step()
            netG.zero_grad()
            criterion(netD(netG(z)), y).backward()
            optimizerG.step()
        """,
        """
        def closure():
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            return loss
        for _ in range(10):
            optimizer.step(closure)
        """,
        """
        import torch
        for trial in range(3):
            model(x).sum().backward()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)  # a fresh optimizer per trial
            opt.step()
        """,
        """
        for epoch in range(10):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                scheduler.step()
                for p in model.parameters():
                    p.grad = None
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            import torch.optim as optim
            class Critic(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = nn.Linear(4, 1)
                    self.optimizer = optim.Adam(self.parameters())
            class Actor(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = nn.Linear(4, 2)
                    self.optimizer = optim.Adam(self.parameters())
            class Agent:
                def __init__(self):
                    self.actor, self.critic = Actor(), Critic()
                def update(self, critic_loss, actor_loss):
                    critic_loss.backward()
                    self.critic.optimizer.step()
                    self.actor.zero_grad()
                    actor_loss.backward()
                    self.actor.optimizer.step()
            """
        ),
        Invalid(
            """
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            """
        ),
        Invalid(
            """
            def train_step(model, optimizer, criterion, x, y):
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                return loss.item()
            for x, y in loader:
                train_step(model, optimizer, criterion, x, y)
            """
        ),
        Invalid(
            """
            optimizer.zero_grad()
            for epoch in range(100):
                loss = criterion(model(X), Y)
                loss.backward()
                optimizer.step()
            """
        ),
        Invalid(
            """
            for x, y in loader:
                optD.zero_grad()
                criterion(D(x), y).backward()
                optD.step()
                criterion(D(G(z)), y).backward()
                optG.step()
            """
        ),
    ]
