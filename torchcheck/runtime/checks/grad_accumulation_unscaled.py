"""Runtime twin of `torchcheck/rules/grad_accumulation_unscaled.py`: micro-batch gradient
accumulation whose loss is not scaled down. Reported, at the loss's line, when in two consecutive
optimizer steps the same line's loss (a mean over its batch) was backpropagated as the loss
function returned it k > 1 times, a new batch drawn from the same DataLoader before each backward,
with no `zero_grad()` between them and the gradients untouched between the last backward and the
step.

Left alone, because each backpropagates another tensor or is not accumulation: a scaled loss
(`loss / k`, Accelerate's `accelerator.backward`, Lightning's `accumulate_grad_batches`, the
transformers Trainer, `GradScaler.scale`), `reduction="sum"` (its sum over micro-batches is the
big batch's), several losses backpropagated in one step (GAN, multi-task: other lines, or
batches drawn before the backward passes or from different loaders), gradients rescaled or
clipped in place before the step. Scaling the learning rate by 1/k instead cannot be seen at run
time."""
from __future__ import annotations

import weakref

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.frames import user_frame

MEAN_REDUCTIONS = ("mean", "batchmean")
HELD_LOSSES = 256  # loss outputs remembered between two steps, at most (a loop of forwards without steps)


def averages(args, kwargs) -> bool:
    """Does a loss call reduce by a mean? Among the options after input and target, the
    reduction is the only string, and the legacy `size_average=False`/`reduce=False` the only
    False (a positional False of another option makes it unknown, so no)."""
    reduction = kwargs.get("reduction")
    if len(args) > 2:
        options = args[2:]
        if any(option is False for option in options):
            return False
        if reduction is None:
            reduction = next((option for option in options if isinstance(option, str)), None)
    return (reduction or "mean") in MEAN_REDUCTIONS and kwargs.get("size_average") is not False \
        and kwargs.get("reduce") is not False


class Watched:
    """The gradient of one parameter as the last backward pass left it, to see it changed before the step."""

    __slots__ = ("grad", "version")

    def __init__(self) -> None:
        self.grad = None
        self.version = -1

    def accumulated(self, param) -> None:
        self.grad, self.version = weakref.ref(param.grad), param.grad._version

    def untouched(self, param) -> bool:
        return self.grad is not None and param.grad is self.grad() and param.grad._version == self.version


class GradAccumulationUnscaled(RuntimeCheck):
    name = "grad-accumulation-unscaled"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.losses: dict[int, tuple] = {}  # id(loss output) -> (weak reference, its line), since the last step
        self.fetches = 0  # batches drawn from DataLoaders so far
        self.fetched_from = 0  # id of the DataLoader iterator that gave the last batch
        self.backwards: list[tuple] = []  # (loss line, fetches, fetched_from) of each backward since the last step
        self.streaks: dict = {}  # loss line -> consecutive steps that accumulated it unscaled
        self.watched = weakref.WeakKeyDictionary()  # optimizer -> (parameter, Watched): its first trainable one
        self.reported: set = set()

    def on_batch_fetched(self, iterator) -> None:
        self.fetches += 1
        self.fetched_from = id(iterator)

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if output.grad_fn is None or output.dim() or not averages(args, kwargs):
            return
        if len(self.losses) >= HELD_LOSSES:
            self.losses.clear()
        self.losses[id(output)] = (weakref.ref(output), locate())

    def on_backward(self, tensor) -> None:
        entry = self.losses.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            self.backwards.append((entry[1], self.fetches, self.fetched_from))

    def on_optimizer_zero_grad(self, optimizer) -> None:
        self.backwards.clear()

    def on_module_zero_grad(self, module) -> None:
        self.backwards.clear()

    def on_step_pre(self, optimizer) -> None:
        backwards = self.backwards
        if not backwards:
            return
        self.losses.clear()
        if len(backwards) == 1 and not self.streaks:  # the usual step: one backward pass
            backwards.clear()
            return
        accumulated = self.accumulated_lines() if len(backwards) > 1 else {}
        self.backwards = []
        for line in [line for line in self.streaks if line not in accumulated]:
            del self.streaks[line]
        if not accumulated:
            return
        untouched = self.gradients_untouched(optimizer)
        for line, count in accumulated.items():
            streak = self.streaks[line] = self.streaks.get(line, 0) + 1
            if streak >= 2 and untouched and line not in self.reported:
                self.reported.add(line)
                self.report(f"This loss (a mean over its batch) was backpropagated {count} times per"
                            f" `{type(optimizer).__name__}.step()`, once per new batch, without being scaled: the"
                            f" step uses {count} times the mean gradient of those batches; divide the loss by the"
                            " number of accumulation steps (if the learning rate is divided instead, ignore this"
                            " check for this loop)", where=line, related=(("the optimizer step", user_frame()),))

    def accumulated_lines(self) -> dict:
        """Lines whose loss was backpropagated more than once since the last step, each time after
        a new batch from the same DataLoader iterator: line -> backward passes."""
        by_line: dict = {}
        for line, fetches, source in self.backwards:
            by_line.setdefault(line, []).append((fetches, source))
        return {line: len(seen) for line, seen in by_line.items()
                if len(seen) > 1 and len({source for _, source in seen}) == 1
                and all(earlier[0] < later[0] for earlier, later in zip(seen, seen[1:]))}

    def gradients_untouched(self, optimizer) -> bool:
        """Did the gradient of the optimizer's first trainable parameter reach the step as the last
        backward pass left it (not rescaled, clipped or replaced)? Watched from the first step that
        accumulated: False until then."""
        watched = self.watched.get(optimizer)
        if watched is None:
            param = next((p for group in optimizer.param_groups for p in group["params"] if p.requires_grad), None)
            if param is None:
                return False
            state = Watched()
            self.context.stack.callback(param.register_post_accumulate_grad_hook(state.accumulated).remove)
            self.watched[optimizer] = (weakref.ref(param), state)
            return False
        param = watched[0]()
        return param is not None and param.grad is not None and watched[1].untouched(param)
