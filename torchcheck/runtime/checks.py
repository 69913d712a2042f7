"""The runtime checks. Mechanisms are chosen for low overhead: optimizer step hooks,
post-accumulate-grad hooks, and wrappers around the few torch functions a check needs
(`F.batch_norm` and `F.dropout` see every BatchNorm and Dropout layer, so no per-module hook is
needed; never a dispatch mode). Wrappers call the original with the same arguments and
return its result unchanged; every hook and patch is undone when the session ends."""
from __future__ import annotations

import contextlib
import functools
import gc
import math
import sys
import warnings
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import optimizer as optimizer_hooks

from torchcheck.runtime.harness import IndexCheckError, TorchcheckError

LOSS_FUNCTIONS = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
                  "binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss",
                  "multilabel_soft_margin_loss", "poisson_nll_loss", "gaussian_nll_loss")
DROPOUT_FUNCTIONS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
STALE_AFTER = 2  # a loss still holding its graph this many optimizer steps after it was made was kept
GRAD_CHECK_EVERY = 16  # gradients are a full pass over the parameters: sampled, while losses are checked every step


class WeakIdMap:
    """A weak map keyed by object identity. Tensors cannot be keys of a WeakKeyDictionary or members
    of a WeakSet: those compare keys with `==`, which is elementwise for tensors."""

    def __init__(self) -> None:
        self._data: dict[int, tuple[weakref.ref, object]] = {}

    def _entry(self, obj):
        entry = self._data.get(id(obj))
        return entry if entry is not None and entry[0]() is obj else None

    def __contains__(self, obj) -> bool:
        return self._entry(obj) is not None

    def get(self, obj, default=None):
        entry = self._entry(obj)
        return entry[1] if entry is not None else default

    def __getitem__(self, obj):
        entry = self._entry(obj)
        if entry is None:
            raise KeyError(id(obj))
        return entry[1]

    def __setitem__(self, obj, value) -> None:
        key = id(obj)
        entry = self._entry(obj)
        if entry is not None:
            self._data[key] = (entry[0], value)
            return
        data = self._data

        def forget(ref, key=key):
            if data.get(key, (None,))[0] is ref:
                del data[key]

        data[key] = (weakref.ref(obj, forget), value)

    def add(self, obj) -> None:
        self[obj] = True

    def discard(self, obj) -> None:
        if self._entry(obj) is not None:
            del self._data[id(obj)]

    __delitem__ = discard

    def items(self) -> list[tuple[object, object]]:
        return [(obj, value) for ref, value in list(self._data.values()) if (obj := ref()) is not None]

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


def patch(stack: contextlib.ExitStack, owner, name: str, make_wrapper) -> None:
    """Replace owner.name by make_wrapper(original) until the stack closes."""
    original = getattr(owner, name)
    had_own = name in vars(owner)
    wrapper = functools.wraps(original)(make_wrapper(original))
    setattr(owner, name, wrapper)

    def restore() -> None:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)

    stack.callback(restore)


class ParamState:
    """What the stale-gradient check knows of one parameter since the last optimizer step."""

    __slots__ = ("grad_id", "version", "extra", "accumulations", "cleared")

    def __init__(self) -> None:
        self.grad_id = None  # the .grad tensor the last step consumed
        self.version = 0
        self.extra = 0  # in-place changes made by clipping/unscaling, which are not clears
        self.accumulations = 0  # backward passes accumulated since the last step
        self.cleared = False


class State:
    """What the checks remember during a session: modules in forward, optimizer steps, tagged
    tensors. Modules, parameters and tensors are held weakly."""

    def __init__(self, session) -> None:
        self.session = session
        self.models: weakref.WeakSet = weakref.WeakSet()  # explicit models, and top-level modules seen
        self.optimizers: weakref.WeakSet = weakref.WeakSet()
        self.explicit = False
        self.iteration = 0  # the most optimizer steps any single optimizer has taken
        self.steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> its steps
        self.params = WeakIdMap()  # parameter -> ParamState
        self.param_names = WeakIdMap()
        self.records: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> (params, [(ref, state)])
        self.nograd_train_forwards: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.recalibrating = False  # reset_running_stats() was called: statistics are being re-estimated
        self.softmax_outputs = WeakIdMap()
        self.losses = WeakIdMap()  # loss tensor -> (iteration, where)
        self.nonfinite_reported = False
        self.loss_went_nonfinite = False
        self.device_losses: dict[torch.device, DeviceLosses] = {}
        self.stack: contextlib.ExitStack | None = None

    # -- objects ---------------------------------------------------------------------------
    def watch(self, objects) -> None:
        for obj in objects:
            if isinstance(obj, nn.Module):
                self.models.add(obj)
                self.explicit = True
            elif isinstance(obj, torch.optim.Optimizer):
                self.optimizers.add(obj)
                self.explicit = True
                self.hook_params(obj)
            else:
                raise TypeError(f"watch() takes models and optimizers, not {type(obj).__name__}")

    def watches_module(self, module: nn.Module) -> bool:
        if not self.explicit or not self.models:
            return True
        return any(module is m or any(module is sub for sub in m.modules()) for m in self.models)

    def watches_optimizer(self, optimizer) -> bool:
        return not self.explicit or not self.optimizers or optimizer in self.optimizers

    def module_path(self, module: nn.Module) -> str:
        roots = list(self.models) + [m for m in _modules_being_called() if m is not None][-1:]
        for root in roots:
            for name, sub in root.named_modules():
                if sub is module:
                    return name or type(root).__name__
        return type(module).__name__

    def param_path(self, param) -> str:
        """`features.0.weight`: the parameter's name in its model (found once, when a finding needs it)."""
        name = self.param_names.get(param)
        if name is None:
            with warnings.catch_warnings():  # some torch module objects warn when inspected
                warnings.simplefilter("ignore")
                roots = list(self.models) or [o for o in gc.get_objects() if isinstance(o, nn.Module)]
            candidates = [n for root in roots for n, p in root.named_parameters() if p is param]
            name = max(candidates, key=lambda n: n.count("."), default="a parameter")
            self.param_names[param] = name
        return name

    def hook_params(self, optimizer) -> list:
        """The optimizer's sampled parameters with their states, hooking any not seen yet: the first
        and last trainable parameter of each group. Forgetting zero_grad() leaves every gradient
        stale and a partial clear leaves one end stale, so two per group find it, at a per-step cost
        (one hook call per backward each) that does not grow with the model."""
        count = sum(len(group["params"]) for group in optimizer.param_groups)
        known = self.records.get(optimizer)
        if known is not None and known[0] == count:
            return known[1]
        records = []
        for group in optimizer.param_groups:
            trainable = [p for p in group["params"] if p.requires_grad]
            for param in dict.fromkeys(trainable[:1] + trainable[-1:]):
                state = self.params.get(param)
                if state is None:
                    state = self.params[param] = ParamState()
                    hook = functools.partial(_count_accumulation, state)
                    self.stack.callback(param.register_post_accumulate_grad_hook(hook).remove)
                records.append((weakref.ref(param), state))
        self.records[optimizer] = (count, records)
        return records

    def report(self, name: str, message: str, **kwargs) -> None:
        self.session.report(name, message, step=kwargs.pop("step", self.iteration), **kwargs)

    def wants(self, name: str) -> bool:
        return self.session.wants(name)

    # -- layers in train mode under no_grad: eval-mode-missing -------------------------------
    def on_train_mode_layer(self, module) -> None:
        """A BatchNorm updating its running statistics, or a dropout dropping, with grad disabled."""
        if not self.wants("eval-mode-missing") or not isinstance(module, nn.Module) or not self.watches_module(module):
            return
        if self.recalibrating:
            return  # re-estimating statistics on purpose (swa_utils.update_bn, a user's recalibration)
        if isinstance(module, _BatchNorm) and module.momentum is None:
            return
        count = self.nograd_train_forwards.get(module, 0) + 1
        self.nograd_train_forwards[module] = count
        if count < 2:  # one no-grad forward between steps can be part of training (a GAN's generator)
            return
        if _inside("swa_utils.py"):
            return
        path = self.module_path(module)
        kind = type(module).__name__
        what = "its running statistics were updated from this data" if isinstance(module, _BatchNorm) else "it dropped units"
        self.report("eval-mode-missing",
                    f"{kind} `{path}` ran in train mode during a no-grad forward (evaluation or inference):"
                    f" {what}; call `model.eval()` before evaluating", module_path=path, outside_modules=True)

    # -- optimizer steps: missing-zero-grad, non-finite gradients, kept losses -----------------
    def on_step_pre(self, optimizer, args, kwargs) -> None:
        if not self.watches_optimizer(optimizer):
            return
        records = self.hook_params(optimizer)
        if self.wants("missing-zero-grad"):
            self.check_stale_gradients(optimizer, records)
        if self.wants("non-finite-loss") and not self.nonfinite_reported and (
                self.loss_went_nonfinite or self.steps.get(optimizer, 0) % GRAD_CHECK_EVERY == 0):
            self.check_device_losses()
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if params:
                self.check_finite_gradients(params)

    def check_stale_gradients(self, optimizer, records) -> None:
        for ref, state in records:
            if state.grad_id is None or state.accumulations == 0 or state.cleared:
                continue
            param = ref()
            if param is None or param.grad is None:
                continue
            added = state.accumulations
            if id(param.grad) == state.grad_id and param.grad._version - state.version == added + state.extra:
                path = self.param_path(param)
                self.report("missing-zero-grad",
                            f"`{type(optimizer).__name__}.step()` uses gradients that already fed the previous"
                            f" step: nothing cleared them (`{path}` accumulated {added} more backward pass"
                            f"{'es' if added != 1 else ''} on top); call `optimizer.zero_grad()` each step")
                return

    def check_finite_gradients(self, params) -> None:
        norms = torch._foreach_norm([p.grad for p in params])
        if math.isfinite(torch.stack(norms).sum().item()):
            return
        first = next(i for i, n in enumerate(norms) if not math.isfinite(n.item()))
        path = self.param_path(params[first])
        self.nonfinite_reported = True
        if self.loss_went_nonfinite:
            return  # the loss was reported already; the gradient check only confirmed it
        self.report("non-finite-loss", f"The gradient of `{path}` is NaN or Inf at step {self.iteration}"
                                       " (the first step where one appeared)", module_path=path.rsplit(".", 1)[0])

    def on_step_post(self, optimizer, args, kwargs) -> None:
        if not self.watches_optimizer(optimizer):
            return
        self.steps[optimizer] = self.steps.get(optimizer, 0) + 1
        self.iteration = max(self.iteration, self.steps[optimizer])
        for ref, state in self.hook_params(optimizer):
            param = ref()
            grad = param.grad if param is not None else None
            state.grad_id, state.version = (id(grad), grad._version) if grad is not None else (None, 0)
            state.extra = state.accumulations = 0
            state.cleared = False
        if self.nograd_train_forwards:
            self.nograd_train_forwards = weakref.WeakKeyDictionary()
        self.recalibrating = False
        if self.losses and self.wants("loss-accumulated-without-item"):
            self.check_kept_losses()

    def on_zero_grad(self, params) -> None:
        for param in params:
            state = self.params.get(param)
            if state is not None:
                state.cleared = True

    def on_grad_mutation(self, params, before: dict) -> None:
        """A clip or unscale changed gradients in place: not a clear, so count it as expected."""
        for param in params:
            state = self.params.get(param)
            if param.grad is not None and state is not None and id(param.grad) in before:
                state.extra += param.grad._version - before[id(param.grad)]

    def check_kept_losses(self) -> None:
        for tensor, (made, where) in self.losses.items():
            if tensor.grad_fn is not None and self.iteration - made >= STALE_AFTER:
                self.report("loss-accumulated-without-item",
                            f"A loss tensor made at step {made} still holds its autograd graph"
                            f" {self.iteration - made} steps later: every kept step's graph stays in memory;"
                            " accumulate `loss.item()` (or `loss.detach()`)", where=where, step=made)
                del self.losses[tensor]

    # -- losses -------------------------------------------------------------------------------
    def on_loss(self, name: str, input, target, output) -> None:
        if name == "cross_entropy" and isinstance(input, torch.Tensor) and input in self.softmax_outputs:
            if self.wants("softmax-before-cross-entropy"):
                self.report("softmax-before-cross-entropy",
                            "`cross_entropy` got softmax probabilities: it applies log-softmax itself; pass the"
                            " raw logits")
        if isinstance(target, torch.Tensor) and target.requires_grad and self.wants("target-requires-grad"):
            self.report("target-requires-grad", f"The target of `{name}` requires grad: gradients flow into it;"
                                                " detach it or compute it under `torch.no_grad()`")
        if not isinstance(output, torch.Tensor) or output.grad_fn is None:
            return
        from torchcheck.runtime.harness import user_frame

        where = user_frame()
        if self.wants("loss-accumulated-without-item"):
            self.losses[output] = (self.iteration, where)
        if self.wants("non-finite-loss") and not self.loss_went_nonfinite:
            if output.device.type == "cpu":
                if not math.isfinite(output.sum().item() if output.dim() else output.item()):
                    self.report_non_finite_loss(self.iteration, name, where)
                return
            losses = self.device_losses.get(output.device)
            if losses is None:
                losses = self.device_losses[output.device] = DeviceLosses(output.device)
            if losses.add(output, (self.iteration, name, where)):
                self.check_device_losses()  # the buffer is full: read it now

    def check_device_losses(self) -> None:
        """Read the losses held on devices (one synchronisation each): report the first non-finite one."""
        for losses in self.device_losses.values():
            first = losses.first_non_finite()
            if first is not None and not self.loss_went_nonfinite:
                self.report_non_finite_loss(*first)

    def report_non_finite_loss(self, step: int, name: str, where) -> None:
        self.loss_went_nonfinite = True
        self.report("non-finite-loss", f"`{name}` returned NaN or Inf at step {step} (the first step where one"
                                       " appeared)", where=where, step=step)

    def on_sum(self, result, *operands) -> None:
        """`total = total + loss` keeps the graph of every loss summed in: tag the sum with the
        oldest step it reaches back to."""
        made = [self.losses[o][0] for o in operands if isinstance(o, torch.Tensor) and o in self.losses]
        if made and isinstance(result, torch.Tensor) and result.grad_fn is not None:
            oldest = min(made)
            where = next(self.losses[o][1] for o in operands if isinstance(o, torch.Tensor) and o in self.losses
                         and self.losses[o][0] == oldest)
            self.losses[result] = (oldest, where)

    def finish(self) -> None:
        """Checks whose results wait on the device are read once more when a run ends."""
        if self.device_losses and self.wants("non-finite-loss"):
            try:
                self.check_device_losses()
            except TorchcheckError:
                raise
            except RuntimeError:  # a device error (e.g. an assert in the user's code) already ended the run
                pass


class DeviceLosses:
    """Loss values on an accelerator, copied into a buffer on the device (one copy kernel per loss,
    never waiting for the device) and read in one synchronisation when gradients are sampled, when
    the buffer is full and when the run ends: the first non-finite loss is found at its exact step."""

    SIZE = 64

    def __init__(self, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64  # float64: a finite loss stays finite
        self.buffer = torch.zeros(self.SIZE, dtype=dtype, device=device)
        self.entries: list[tuple] = []  # what each filled slot holds: (step, loss name, user line)

    def add(self, output: torch.Tensor, entry: tuple) -> bool:
        """Hold one loss; True when the buffer is full and must be read."""
        with torch.no_grad():
            self.buffer[len(self.entries)].copy_(output.sum() if output.dim() else output)
        self.entries.append(entry)
        return len(self.entries) == self.SIZE

    def first_non_finite(self) -> tuple | None:
        if not self.entries:
            return None
        finite = torch.isfinite(self.buffer[: len(self.entries)]).tolist()
        entries, self.entries = self.entries, []
        return next((entry for entry, ok in zip(entries, finite) if not ok), None)


def _count_accumulation(state: ParamState, param) -> None:
    state.accumulations += 1


def _modules_being_called() -> list:
    """The modules whose __call__ is on the stack, innermost first (the last is the root model)."""
    found = []
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_call_impl":
            found.append(frame.f_locals.get("self"))
        frame = frame.f_back
    return found


def _calling_module(depth: int = 2):
    """`self` of the function that called a wrapped functional (a layer's or a model's forward)."""
    caller = sys._getframe(depth).f_locals.get("self")
    return caller if isinstance(caller, nn.Module) else None


def _inside(filename: str) -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(filename):
            return True
        frame = frame.f_back
    return False


def _arg(args, kwargs, position: int, name: str):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


# -- installation --------------------------------------------------------------------------------
def install_all(state: State, stack: contextlib.ExitStack) -> None:
    state.stack = stack
    stack.callback(optimizer_hooks.register_optimizer_step_pre_hook(state.on_step_pre).remove)
    stack.callback(optimizer_hooks.register_optimizer_step_post_hook(state.on_step_post).remove)
    _install_zero_grad(state, stack)
    _install_grad_mutators(state, stack)
    _install_losses(state, stack)
    _install_softmax(state, stack)
    _install_dropout(state, stack)
    _install_batch_norm(state, stack)
    _install_interpolate(state, stack)
    _install_indexing(state, stack)

    def reset_running_stats(original):
        def wrapper(self, *args, **kwargs):
            state.recalibrating = True
            return original(self, *args, **kwargs)

        return wrapper

    def train(original):
        def wrapper(self, mode=True):
            if mode is False:
                state.recalibrating = False
            return original(self, mode)

        return wrapper

    patch(stack, torch.nn.modules.batchnorm._NormBase, "reset_running_stats", reset_running_stats)
    patch(stack, nn.Module, "train", train)


def _install_zero_grad(state: State, stack) -> None:
    def optimizer_zero_grad(original):
        def wrapper(self, *args, **kwargs):
            for _, param_state in state.records.get(self, (0, ()))[1]:
                param_state.cleared = True
            return original(self, *args, **kwargs)

        return wrapper

    def module_zero_grad(original):
        def wrapper(self, *args, **kwargs):
            state.on_zero_grad(list(self.parameters()))
            return original(self, *args, **kwargs)

        return wrapper

    patch(stack, torch.optim.Optimizer, "zero_grad", optimizer_zero_grad)
    patch(stack, nn.Module, "zero_grad", module_zero_grad)


def _install_grad_mutators(state: State, stack) -> None:
    """Clipping and GradScaler.unscale_ change gradients in place; tell the stale-gradient check."""

    def clipping(original):
        def wrapper(parameters, *args, **kwargs):
            if not isinstance(parameters, (torch.Tensor, list, tuple)):
                parameters = list(parameters)  # a generator: read it once, pass the same list on
            params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
            before = {id(p.grad): p.grad._version for p in params if p.grad is not None}
            result = original(parameters, *args, **kwargs)
            state.on_grad_mutation(params, before)
            return result

        return wrapper

    def unscaling(original):
        def wrapper(self, optimizer):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            before = {id(p.grad): p.grad._version for p in params if p.grad is not None}
            result = original(self, optimizer)
            state.on_grad_mutation(params, before)
            return result

        return wrapper

    import torch.nn.utils.clip_grad as clip_grad

    for owner in (torch.nn.utils, clip_grad):
        for name in ("clip_grad_norm_", "clip_grad_value_"):
            if hasattr(owner, name):
                patch(stack, owner, name, clipping)
    patch(stack, torch.amp.GradScaler, "unscale_", unscaling)


def _install_losses(state: State, stack) -> None:
    def loss(name):
        def make(original):
            def wrapper(*args, **kwargs):
                output = original(*args, **kwargs)
                state.on_loss(name, _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "target"), output)
                return output

            return wrapper

        return make

    for name in LOSS_FUNCTIONS:
        patch(stack, F, name, loss(name))

    def summing(original):
        def wrapper(self, other):
            result = original(self, other)
            if state.losses and (self in state.losses or (isinstance(other, torch.Tensor) and other in state.losses)):
                state.on_sum(result, self, other)
            return result

        return wrapper

    for name in ("__add__", "__radd__", "__iadd__"):
        patch(stack, torch.Tensor, name, summing)


def _install_softmax(state: State, stack) -> None:
    def tagging(original):
        def wrapper(*args, **kwargs):
            output = original(*args, **kwargs)
            if isinstance(output, torch.Tensor):
                state.softmax_outputs.add(output)
            return output

        return wrapper

    for owner, name in ((F, "softmax"), (F, "log_softmax"), (torch, "softmax"), (torch, "log_softmax"),
                        (torch.Tensor, "softmax"), (torch.Tensor, "log_softmax")):
        patch(stack, owner, name, tagging)


def _install_dropout(state: State, stack) -> None:
    def dropout(name):
        def make(original):
            def wrapper(*args, **kwargs):
                training = _arg(args, kwargs, 2, "training")
                p = _arg(args, kwargs, 1, "p")
                if (training is None or training is True) and (p is None or p > 0):
                    caller = _calling_module()
                    if caller is not None and not caller.training:
                        if state.wants("functional-dropout-training"):
                            path = state.module_path(caller)
                            state.report("functional-dropout-training",
                                         f"`F.{name}` dropped units while module `{path}` is in eval mode: pass"
                                         " `training=self.training`", module_path=path)
                    elif caller is not None and not torch.is_grad_enabled():
                        state.on_train_mode_layer(caller)
                return original(*args, **kwargs)

            return wrapper

        return make

    for name in DROPOUT_FUNCTIONS:
        patch(stack, F, name, dropout(name))


def _install_batch_norm(state: State, stack) -> None:
    def make(original):
        def wrapper(*args, **kwargs):
            if _arg(args, kwargs, 5, "training") and _arg(args, kwargs, 1, "running_mean") is not None \
                    and not torch.is_grad_enabled():
                caller = _calling_module()
                if isinstance(caller, _BatchNorm):
                    state.on_train_mode_layer(caller)
            return original(*args, **kwargs)

        return wrapper

    patch(stack, F, "batch_norm", make)


def _looks_like_image(x: torch.Tensor) -> bool:
    if x.dim() != 3:
        return False
    channels, height, width = x.shape
    return channels in (1, 3, 4) and height >= 8 and width >= 8 and 0.25 <= height / width <= 4


def _install_interpolate(state: State, stack) -> None:
    def make(original):
        def wrapper(*args, **kwargs):
            x = _arg(args, kwargs, 0, "input")
            size = _arg(args, kwargs, 1, "size")
            scale = _arg(args, kwargs, 2, "scale_factor")
            mode = _arg(args, kwargs, 3, "mode") or "nearest"
            if isinstance(x, torch.Tensor) and _looks_like_image(x) and mode in ("nearest", "nearest-exact", "area") \
                    and (isinstance(size, int) or isinstance(scale, (int, float))) and state.wants("interpolate-3d-input"):
                c, h, w = x.shape
                state.report("interpolate-3d-input",
                             f"`F.interpolate` got a 3-D tensor of shape ({c}, {h}, {w}) that looks like one (C, H, W)"
                             f" image: it is read as {c} signals of {h} channels and only the width is resized; use"
                             " `x.unsqueeze(0)` and size=(H, W)")
            return original(*args, **kwargs)

        return wrapper

    patch(stack, F, "interpolate", make)


def _install_indexing(state: State, stack) -> None:
    def check(op: str, source: torch.Tensor, dim: int, index) -> None:
        if not isinstance(index, torch.Tensor) or not isinstance(source, torch.Tensor):
            return
        if not state.wants("index-select-out-of-bounds"):
            return
        if index.dtype not in (torch.int64, torch.int32):
            state.report("index-select-out-of-bounds", f"`{op}` got an index of dtype {index.dtype}; it needs"
                                                       " int64 (or int32)", error=IndexCheckError)
        if index.numel() == 0:
            return
        size = source.shape[dim] if source.dim() else 1
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            state.report("index-select-out-of-bounds",
                         f"`{op}` index {bad} is out of bounds for dimension {dim} of size {size} (source shape"
                         f" {tuple(source.shape)}, index shape {tuple(index.shape)}, device {source.device})",
                         error=IndexCheckError)

    def index_select(original, op):
        def wrapper(source, dim, index, *args, **kwargs):
            check(op, source, dim if dim >= 0 else dim + source.dim(), index)
            return original(source, dim, index, *args, **kwargs)

        return wrapper

    def embedding(original):
        def wrapper(input, weight, *args, **kwargs):
            check("F.embedding", weight, 0, input)
            return original(input, weight, *args, **kwargs)

        return wrapper

    patch(stack, torch, "index_select", lambda o: index_select(o, "torch.index_select"))
    patch(stack, torch.Tensor, "index_select", lambda o: index_select(o, "Tensor.index_select"))
    patch(stack, torch, "gather", lambda o: index_select(o, "torch.gather"))
    patch(stack, torch.Tensor, "gather", lambda o: index_select(o, "Tensor.gather"))
    patch(stack, F, "embedding", embedding)
