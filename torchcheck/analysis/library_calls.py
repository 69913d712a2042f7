"""What calls into torch, torchvision and the standard library return: activations, losses,
layers, optimizers, grad-mode contexts, tensor factories. Mixed into `Frame`."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.grad_mode import GRAD_OFF, GRAD_ON
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.syntax import infer_literal_dtype, literal, namedtuple_fields
from torchcheck.analysis.values import TENSOR, UNKNOWN, Value, combine_graph


class LibraryCallSemantics:
    def call_ref(self, node: cst.Call, qualname: str, args, kwargs) -> Value:
        first = args[0] if args else kwargs.get("input", UNKNOWN)
        if qualname in api.SOFTMAX_FUNCTIONS:
            return Value(kind="tensor", activation="softmax", origin=node, graph=first.graph, source=first.source)
        if qualname in api.LOG_SOFTMAX_FUNCTIONS:
            return Value(kind="tensor", activation="log_softmax", origin=node, graph=first.graph, source=first.source)
        if qualname in api.SIGMOID_FUNCTIONS:
            return Value(kind="tensor", activation="sigmoid", origin=node, graph=first.graph, source=first.source)
        if qualname == "torch.exp" and first.activation == "log_softmax":
            return first.with_(activation="softmax", origin=node)
        if qualname == "torch.exp" and first.is_tensor:
            return Value(kind="tensor", activation="exp", origin=node, graph=first.graph, source=first.source)
        if qualname == "torch.log" and first.activation == "softmax":
            return first.with_(activation="log_softmax", origin=node)
        if qualname.startswith("torch.nn.functional."):
            name = api.functional_loss(qualname)
            if name is not None:
                return Value(kind="tensor", is_loss=True, graph=loss_graph(self, args), source=first.source)
            if qualname.rsplit(".", 1)[1] in ("relu", "relu6", "elu", "gelu", "dropout", "linear", "leaky_relu"):
                activation = "logits" if qualname.endswith(".linear") else None
                return Value(kind="tensor", activation=activation, graph=first.graph, source=first.source)
        if api.loss_class(qualname):
            return Value(kind="criterion", qualname=api.loss_class(qualname), origin=node)
        if api.is_optimizer_class(qualname):
            return Value(kind="optimizer", qualname=qualname, source=_updated_model(node))
        if qualname.startswith("torch.optim.lr_scheduler."):
            return Value(kind="scheduler", qualname=qualname)
        if qualname.endswith("GradScaler"):
            return Value(kind="scaler", qualname=qualname)
        if qualname.split(".", 1)[0] in api.OTHER_RUNTIMES:  # `cv2.dnn.readNet(path)`, `np.mean(losses)`
            return Value(kind="instance", qualname=qualname, graph=False)  # not a torch module, no autograd graph
        if qualname in api.NO_GRAD_CONTEXTS:
            return Value(kind="grad_ctx", qualname=GRAD_OFF)
        if qualname in api.ENABLE_GRAD_CONTEXTS:
            return Value(kind="grad_ctx", qualname=GRAD_ON)
        if qualname in api.SET_GRAD_ENABLED:
            flag = literal(node.args[0].value) if node.args else None
            if flag is True or flag is False:
                return Value(kind="grad_ctx", qualname=GRAD_ON if flag else GRAD_OFF)
            return Value(kind="unknown_grad_ctx")
        if qualname == "torch.nn.Sequential":
            items = args
            if len(args) == 1 and args[0].kind == "tuple" and args[0].items and all(i.kind == "tuple" for i in args[0].items):
                items = [i.items[1] if len(i.items) > 1 else UNKNOWN for i in args[0].items]  # OrderedDict
            return Value(kind="layer", qualname=qualname, items=tuple(items))
        if qualname in ("collections.namedtuple", "typing.NamedTuple"):
            return Value(kind="record_type", qualname=qualname, keys=namedtuple_fields(node))
        if qualname in api.NAMESPACES and not args:
            return Value(kind="instance", qualname=qualname, keys=tuple(kwargs), items=tuple(kwargs.values()))
        if qualname in ("collections.OrderedDict",) and args:
            return args[0]
        if qualname == "torchvision.transforms.Compose":
            items = args[0].items if args and args[0].kind == "tuple" else ()
            return Value(kind="layer", qualname=qualname, image=any(i.qualname in api.IMAGE_TRANSFORM_CLASSES for i in items))
        if qualname in api.IMAGE_LOADERS:
            return Value(kind="tensor", image=True, shape=(None, None, None), graph=False)
        if api.is_torchvision_builder(qualname):
            return Value(kind="model", qualname=qualname, activation="logits")
        if qualname in api.MODEL_WRAPPERS and first.kind in ("model", "layer"):
            return first
        if qualname == "torch.optim.swa_utils.AveragedModel":
            return Value(kind="model", qualname=qualname)
        if qualname in api.TENSOR_FACTORIES:
            return self.tensor_factory(node, qualname, args, kwargs)
        if qualname in api.LIKE_FACTORIES:
            made = self.tensor_factory(node, qualname, args, kwargs)
            return made.with_(dtype=made.dtype or first.dtype, shape=first.shape) if first.is_tensor else made
        if qualname in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            return Value(kind="tensor", graph=True)
        if qualname in api.PRESERVING_FUNCTIONS and first.is_tensor:
            return first.with_(shape=None, image=False)
        if qualname in ("torch.stack", "torch.cat", "torch.concat", "torch.concatenate"):
            items = first.items if first.kind == "tuple" else (first,)
            like = items[0] if items and all(i == items[0] for i in items) else TENSOR  # tensors of one kind
            return like.with_(graph=combine_graph(*(i.graph for i in items)), is_loss=any(i.is_loss for i in items),
                              shape=None, image=False, kind="tensor")
        if qualname in ("torch.sum", "torch.mean"):
            items = first.items if first.kind == "tuple" else (first,)
            total = "exp_sum" if qualname == "torch.sum" and first.activation == "exp" else None
            return Value(kind="tensor", graph=combine_graph(*(i.graph for i in items)), is_loss=any(i.is_loss for i in items),
                         activation=total)
        if qualname in api.MODULE_CONTAINERS:
            contents = first if first.kind in ("tuple", "dict") else Value()
            return Value(kind="layer", qualname=qualname, items=contents.items, keys=contents.keys)
        if qualname.startswith(("torch.nn.", "torchvision.transforms.")) and qualname.rsplit(".", 1)[1][:1].isupper():
            return Value(kind="layer", qualname=qualname, origin=node)  # a layer, or an image transform
        if qualname == "super" and self.func is not None and self.func.cls is not None and self.func.param_names():
            return Value(kind="super", info=self.func.cls, bound=self.env.get(self.func.param_names()[0]))
        if qualname == "functools.partial" and len(args) == 1 and first.kind == "ref":
            return first  # `partial(F.cross_entropy, reduction="sum")`: the same function, options bound
        if qualname == "getattr" and len(args) == 2:
            name = args[1].text
            if name is not None and (name.isidentifier() or first.kind != "ref"):
                return self.named_attribute(first, name)
            if first.kind == "ref" and first.qualname:  # `getattr(models, arch)`
                return Value(kind="ref", qualname=f"{first.qualname}.{api.CHOSEN_BY_NAME}")
        if qualname == "dict" and not args:
            return Value(kind="dict", keys=tuple(kwargs), items=tuple(kwargs.values()))
        if qualname in ("list", "tuple") and first.kind == "tuple":
            return first
        if qualname in ("sum",):
            items = first.items if first.kind == "tuple" else ()
            return Value(kind="tensor", graph=combine_graph(*(i.graph for i in items)), is_loss=any(i.is_loss for i in items))
        if qualname.startswith("torch.") and first.is_tensor:
            return Value(kind="tensor", graph=first.graph, source=first.source)
        return UNKNOWN

    def tensor_factory(self, node: cst.Call, qualname: str, args, kwargs) -> Value:
        dtype = api.LEGACY_TENSOR_DTYPES.get(qualname)
        dtype_arg = next((a for a in node.args if a.keyword is not None and a.keyword.value == "dtype"), None)
        if dtype_arg is not None:
            name = dotted_name(dtype_arg.value) or ""
            dtype = api.DTYPE_NAMES.get(name.rsplit(".", 1)[-1])
        elif qualname in ("torch.tensor", "torch.as_tensor") and node.args:
            dtype = infer_literal_dtype(node.args[0].value)
        elif qualname in ("torch.arange", "torch.randint", "torch.randperm"):
            positional = [a for a in node.args if a.keyword is None]
            literals = [literal(a.value) for a in positional[:3]] if qualname == "torch.arange" else [0]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in literals):
                dtype = "int64"
            elif any(isinstance(v, float) for v in literals):
                dtype = "float32"  # `torch.arange(0, n, 0.5)`
            else:
                dtype = None
        elif qualname in ("torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.linspace"):
            dtype = "float32"
        shape = None
        if qualname in ("torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty"):
            dims = [literal(a.value) for a in node.args if a.keyword is None]
            if len(dims) == 1 and isinstance(node.args[0].value, (cst.Tuple, cst.List)):
                dims = [literal(e.value) for e in node.args[0].value.elements]
            if dims and all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
                shape = tuple(dims)
        requires_grad = next(
            (literal(a.value) for a in node.args if a.keyword is not None and a.keyword.value == "requires_grad"), False
        )
        return Value(kind="tensor", dtype=dtype, shape=shape, graph=True if requires_grad is True else False)


def _updated_model(node: cst.Call) -> str | None:
    """`model` in `optim.SGD(model.parameters(), ...)`."""
    first = node.args[0].value if node.args else None
    if isinstance(first, cst.Call) and isinstance(first.func, cst.Attribute) and first.func.attr.value == "parameters":
        return dotted_name(first.func.value)
    return None


def loss_graph(frame, args) -> object:
    if frame.grad == GRAD_OFF:
        return False
    graphs = [a.graph for a in args[:1]]
    return combine_graph(*graphs) if graphs and graphs[0] is not None else frame.model_output_graph()
