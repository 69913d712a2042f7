"""The events runtime checks subscribe to, each made to happen in exactly one place.

A check subscribes by defining a method `on_<event>` (see `checks/__init__.py`). The event's
source, a wrapper around torch functions or an optimizer hook, is installed the first time any
selected check subscribes to it, and removed when the session ends: with only
`missing-zero-grad` selected, no loss, dropout or indexing function is wrapped. Wrappers call the
original with the same arguments and return its result unchanged. Mechanisms are chosen for low
overhead: optimizer hooks, and wrappers around the few functions checks need (`F.batch_norm` and
`F.dropout` see every BatchNorm and Dropout layer, so no per-module hook is needed; never a
dispatch mode).

| event | happens | handler(...) |
|---|---|---|
| `step_pre`, `step_post` | around `optimizer.step()` of a watched optimizer | `optimizer` |
| `optimizer_zero_grad` | before `Optimizer.zero_grad()` | `optimizer` |
| `module_zero_grad` | before `Module.zero_grad()` | `module` |
| `loss` | after a `torch.nn.functional` loss (and so every `nn.*Loss`) | `name, input, target, output, locate, args, kwargs` |
| `backward` | before `Tensor.backward()` | `tensor` |
| `batch_fetched` | before a `DataLoader` iterator's `__next__` | `iterator` |
| `image_function` | after torchvision's `to_tensor` (so `ToTensor`), `pil_to_tensor` (`PILToTensor`), `normalize` (`Normalize`), `convert_image_dtype`, `decode_image` (so `read_image`), `decode_jpeg`, `decode_png`; patched when torchvision is imported, also later in the run | `name, input, output` |
| `tensor_sum` | after `Tensor.__add__`/`__radd__`/`__iadd__` | `result, left, right` |
| `softmax` | after softmax/log_softmax (functional, torch, Tensor) | `output` |
| `dropout` | before `F.dropout` and its variants | `name, args, kwargs` |
| `batch_norm` | before `F.batch_norm` and SyncBatchNorm's synchronised kernel (as F.batch_norm's arguments) | `args, kwargs` |
| `interpolate` | before `F.interpolate` | `args, kwargs` |
| `index` | before `index_select`, `gather`, `F.embedding` | `op, source, dim, index` |
| `reset_running_stats` | before `_NormBase.reset_running_stats()` | `module` |
| `train_mode` | before `Module.train(mode)` | `module, mode` |
| `run_end` | when the outermost `watch()` block ends | (none) |

`locate()` returns the user's line of the loss call (found once, however many checks ask); `args`
and `kwargs` are the call's own, for its options (`arg(args, kwargs, 5, "log_target")`). Inside a
handler of a wrapped function, `calling_module()` is the module whose code called it.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import optimizer as optimizer_hooks

from torchcheck.runtime.frames import user_frame

LOSS_FUNCTIONS = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
                  "binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss",
                  "multilabel_soft_margin_loss", "poisson_nll_loss", "gaussian_nll_loss")
DROPOUT_FUNCTIONS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")

Installer = Callable[[list, contextlib.ExitStack, object], None]
SOURCES: dict[str, Installer] = {}
_WRAPPER_CODES: set = set()  # the code of every wrapper: calling_module() looks for it on the stack


class Hub:
    """The handlers of each event, in subscription order. A source is installed on the first
    subscription to its event; its wrappers read the live handler list."""

    def __init__(self, stack: contextlib.ExitStack, context) -> None:
        self.stack = stack
        self.context = context
        self.handlers: dict[str, list] = {}

    def subscribe(self, event: str, handler: Callable) -> None:
        handlers = self.handlers.get(event)
        if handlers is None:
            handlers = self.handlers[event] = []
            SOURCES[event](handlers, self.stack, self.context)
        handlers.append(handler)

    def emit(self, event: str, *args) -> None:
        for handler in self.handlers.get(event, ()):
            handler(*args)


def source(event: str):
    def register(installer: Installer) -> Installer:
        SOURCES[event] = installer
        return installer

    return register


def patch(stack: contextlib.ExitStack, owner, name: str, make_wrapper) -> None:
    """Replace owner.name by make_wrapper(original) until the stack closes."""
    original = getattr(owner, name)
    wrapper = make_wrapper(original)
    _WRAPPER_CODES.add(wrapper.__code__)
    replace(stack, owner, name, functools.wraps(original)(wrapper))


def replace(stack: contextlib.ExitStack, owner, name: str, value) -> None:
    original = getattr(owner, name)
    had_own = name in vars(owner)
    setattr(owner, name, value)

    def restore() -> None:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)

    stack.callback(restore)


def calling_module():
    """`self` of the function that called the wrapped torch function now running (the layer whose
    forward called `F.dropout`), or None when that is not a module's method."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code not in _WRAPPER_CODES:
        frame = frame.f_back
    caller = frame.f_back.f_locals.get("self") if frame is not None and frame.f_back is not None else None
    return caller if isinstance(caller, nn.Module) else None


def arg(args, kwargs, position: int, name: str):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def _locate(found: list) -> tuple[str, int, int]:
    """The user's line of the call being handled, looked up once when first asked for."""
    if not found:
        found.append(user_frame())
    return found[0]


# -- optimizers ------------------------------------------------------------------------------------
def _receiver_first(handlers: list):
    """Wraps a method so that each handler sees its receiver (`optimizer`, `module`, the tensor, the
    loader's iterator) before the method runs."""
    def make(original):
        def wrapper(self, *args, **kwargs):
            for handler in handlers:
                handler(self)
            return original(self, *args, **kwargs)

        return wrapper

    return make


@source("step_pre")
def _step_pre(handlers, stack, context) -> None:
    def hook(optimizer, args, kwargs):
        if context.watches_optimizer(optimizer):
            for handler in handlers:
                handler(optimizer)

    stack.callback(optimizer_hooks.register_optimizer_step_pre_hook(hook).remove)


@source("step_post")
def _step_post(handlers, stack, context) -> None:
    def hook(optimizer, args, kwargs):
        if context.watches_optimizer(optimizer):
            for handler in handlers:
                handler(optimizer)

    stack.callback(optimizer_hooks.register_optimizer_step_post_hook(hook).remove)


@source("optimizer_zero_grad")
def _optimizer_zero_grad(handlers, stack, context) -> None:
    patch(stack, torch.optim.Optimizer, "zero_grad", _receiver_first(handlers))


@source("module_zero_grad")
def _module_zero_grad(handlers, stack, context) -> None:
    patch(stack, nn.Module, "zero_grad", _receiver_first(handlers))


# -- losses and what flows into them ---------------------------------------------------------------
@source("loss")
def _loss(handlers, stack, context) -> None:
    def loss(name):
        def make(original):
            def wrapper(*args, **kwargs):
                output = original(*args, **kwargs)
                input, target = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "target")
                locate = functools.partial(_locate, [])
                for handler in handlers:
                    handler(name, input, target, output, locate, args, kwargs)
                return output

            return wrapper

        return make

    for name in LOSS_FUNCTIONS:
        patch(stack, F, name, loss(name))


@source("tensor_sum")
def _tensor_sum(handlers, stack, context) -> None:
    def make(original):
        def wrapper(self, other):
            result = original(self, other)
            for handler in handlers:
                handler(result, self, other)
            return result

        return wrapper

    for name in ("__add__", "__radd__", "__iadd__"):
        patch(stack, torch.Tensor, name, make)


@source("softmax")
def _softmax(handlers, stack, context) -> None:
    def make(original):
        def wrapper(*args, **kwargs):
            output = original(*args, **kwargs)
            for handler in handlers:
                handler(output)
            return output

        return wrapper

    for owner, name in ((F, "softmax"), (F, "log_softmax"), (torch, "softmax"), (torch, "log_softmax"),
                        (torch.Tensor, "softmax"), (torch.Tensor, "log_softmax")):
        patch(stack, owner, name, make)


@source("backward")
def _backward(handlers, stack, context) -> None:
    patch(stack, torch.Tensor, "backward", _receiver_first(handlers))


# -- where tensors come from -----------------------------------------------------------------------
@source("batch_fetched")
def _batch_fetched(handlers, stack, context) -> None:
    from torch.utils.data import dataloader

    patch(stack, dataloader._BaseDataLoaderIter, "__next__", _receiver_first(handlers))


IMAGE_FUNCTIONS = (
    ("torchvision.transforms.functional", ("to_tensor", "pil_to_tensor", "normalize", "convert_image_dtype")),
    ("torchvision.io.image", ("decode_image", "decode_jpeg", "decode_png")),  # read_image calls decode_image
    ("torchvision.io", ("decode_image", "decode_jpeg", "decode_png")),
)


@source("image_function")
def _image_function(handlers, stack, context) -> None:
    def image_function(name):
        def make(original):
            def wrapper(*args, **kwargs):
                output = original(*args, **kwargs)
                input = args[0] if args else next(iter(kwargs.values()), None)
                for handler in handlers:
                    handler(name, input, output)
                return output

            return wrapper

        return make

    def install() -> None:
        for module_name, names in IMAGE_FUNCTIONS:
            module = sys.modules.get(module_name)
            for name in names:
                if module is not None and callable(getattr(module, name, None)):
                    patch(stack, module, name, image_function(name))

    after_import(stack, "torchvision", install)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `then()` once the module `name` has run, when it is first imported while installed;
    finds nothing itself (the other finders find the module)."""

    def __init__(self, name: str, then: Callable[[], None]) -> None:
        self.name = name
        self.then = then
        self.finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self.finding:
            return None
        self.finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _LoaderThen(spec.loader, self)
        return spec


class _LoaderThen(importlib.abc.Loader):
    """A module's own loader, calling the finder's `then()` after the module ran (while the finder
    is installed)."""

    def __init__(self, loader, finder: _AfterImport) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
            self.finder.then()

    def __getattr__(self, name):
        return getattr(self.loader, name)


def after_import(stack: contextlib.ExitStack, name: str, then: Callable[[], None]) -> None:
    """Call `then()` now if module `name` is imported, else when it is (until the stack closes)."""
    if name in sys.modules:
        then()
        return
    finder = _AfterImport(name, then)
    sys.meta_path.insert(0, finder)

    def uninstall() -> None:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)

    stack.callback(uninstall)


# -- layers whose behaviour depends on train()/eval() -----------------------------------------------
@source("dropout")
def _dropout(handlers, stack, context) -> None:
    def dropout(name):
        def make(original):
            def wrapper(*args, **kwargs):
                for handler in handlers:
                    handler(name, args, kwargs)
                return original(*args, **kwargs)

            return wrapper

        return make

    for name in DROPOUT_FUNCTIONS:
        patch(stack, F, name, dropout(name))


@source("batch_norm")
def _batch_norm(handlers, stack, context) -> None:
    def make(original):
        def wrapper(*args, **kwargs):
            for handler in handlers:
                handler(args, kwargs)
            return original(*args, **kwargs)

        return wrapper

    patch(stack, F, "batch_norm", make)

    import torch.nn.modules.batchnorm as batchnorm

    synchronised = batchnorm.sync_batch_norm  # SyncBatchNorm's path across processes, not F.batch_norm

    class SynchronisedBatchNorm:
        @staticmethod
        def apply(input, weight, bias, running_mean, running_var, eps, momentum, *rest):
            as_batch_norm = (input, running_mean, running_var, weight, bias, True, momentum, eps)
            for handler in handlers:
                handler(as_batch_norm, {})
            return synchronised.apply(input, weight, bias, running_mean, running_var, eps, momentum, *rest)

    _WRAPPER_CODES.add(SynchronisedBatchNorm.apply.__code__)
    replace(stack, batchnorm, "sync_batch_norm", SynchronisedBatchNorm)


@source("reset_running_stats")
def _reset_running_stats(handlers, stack, context) -> None:
    patch(stack, torch.nn.modules.batchnorm._NormBase, "reset_running_stats", _receiver_first(handlers))


@source("train_mode")
def _train_mode(handlers, stack, context) -> None:
    def make(original):
        def wrapper(self, mode=True):
            for handler in handlers:
                handler(self, mode)
            return original(self, mode)

        return wrapper

    patch(stack, nn.Module, "train", make)


# -- shapes and indices ----------------------------------------------------------------------------
@source("interpolate")
def _interpolate(handlers, stack, context) -> None:
    def make(original):
        def wrapper(*args, **kwargs):
            for handler in handlers:
                handler(args, kwargs)
            return original(*args, **kwargs)

        return wrapper

    patch(stack, F, "interpolate", make)


@source("index")
def _index(handlers, stack, context) -> None:
    def index_select(op):
        def make(original):
            def wrapper(source, dim, index, *args, **kwargs):
                if isinstance(source, torch.Tensor) and isinstance(dim, int):
                    for handler in handlers:
                        handler(op, source, dim if dim >= 0 else dim + source.dim(), index)
                return original(source, dim, index, *args, **kwargs)

            return wrapper

        return make

    def embedding(original):
        def wrapper(input, weight, *args, **kwargs):
            for handler in handlers:
                handler("F.embedding", weight, 0, input)
            return original(input, weight, *args, **kwargs)

        return wrapper

    patch(stack, torch, "index_select", index_select("torch.index_select"))
    patch(stack, torch.Tensor, "index_select", index_select("Tensor.index_select"))
    patch(stack, torch, "gather", index_select("torch.gather"))
    patch(stack, torch.Tensor, "gather", index_select("Tensor.gather"))
    patch(stack, F, "embedding", embedding)


@source("run_end")
def _run_end(handlers, stack, context) -> None:
    """Emitted by the session itself when the outermost block ends."""
