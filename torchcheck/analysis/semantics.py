"""What calls do to abstract values: torch functions, layers, criteria, models, tensor methods."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.library_calls import loss_graph
from torchcheck.analysis.structure import ClassInfo, FunctionInfo, is_model_like
from torchcheck.analysis.syntax import literal
from torchcheck.analysis.train_mode import mode_set_by
from torchcheck.analysis.values import (
    NUMBER,
    TENSOR,
    UNKNOWN,
    Value,
    dict_item,
)


class CallSemantics:
    """Mixed into `Frame`: the call half of the interpreter."""

    def call(self, node: cst.Call) -> Value:
        func = node.func
        method_base = None
        if type(func) is cst.Attribute:
            dotted = dotted_name(func)
            head = dotted.split(".")[0] if dotted else None
            if dotted is not None and head not in self.env and head in self.fa.imports.aliases and (
                self.func is None or head not in self.fa.module_env
            ):
                callee = self.eval(func)
            else:
                method_base = self.eval(func.value)
                callee = self.attribute_of(method_base, func.attr.value)
                if callee.kind == "unknown" and dotted is not None:
                    callee = self.known_dotted(dotted) or callee  # `self.loss = ...` outside __init__, `cfg.criterion`
                if self.record:
                    self.fa.values[func] = callee
        else:
            callee = self.eval(func)
        args, kwargs = [], {}
        for arg in node.args:
            value = self.eval(arg.value)
            if arg.star == "*":
                args.extend(value.items if value.kind == "tuple" else (UNKNOWN,))
            elif arg.keyword is not None:
                kwargs[arg.keyword.value] = value
            elif not arg.star:
                args.append(value)
        if method_base is not None:
            self.mutate(func, method_base, args)
            self.learn_from_use(func, method_base)
        if self.record:
            self.fa.grad_at[node] = self.grad
            self.fa.scope[node] = self.func
        if type(func) is cst.Attribute and method_base is not None:
            self.set_mode(dotted_name(func.value), mode_set_by(node))
        if self.record:
            self.fa.modes_at[node] = self.modes
        if callee.kind == "function" and isinstance(callee.info, FunctionInfo):
            if self.record:
                self.fa.call_sites.setdefault(callee.info, []).append((node, self.func))
            receiver = dotted_name(func.value) if callee.bound is not None and method_base is not None else None
            bound = callee.bound
            if method_base is not None and method_base.kind == "super":  # `super().__init__(...)` sets our attributes
                # ... where `super()` is called in the method itself, not kept for a closure inside it
                own = self.func is not None and self.func.cls is method_base.info and self.func.param_names()
                receiver = self.func.param_names()[0] if own else None
            elif receiver is not None:
                bound = self.with_attributes_set(bound, receiver, callee.info)
                if self.record:
                    self.fa.values[func.value] = bound
            if node is self.final_call:
                return self.fa.defer_call(callee.info, args, kwargs, bound, self)
            return self.fa.call_function(callee.info, args, kwargs, bound, self, receiver)
        if callee.kind == "model" and isinstance(callee.info, ClassInfo) and self.record:
            forward = callee.info.method("forward")  # `criterion(out, y)` on a loss module: a call of its forward
            if forward is not None:
                self.fa.module_calls.setdefault(forward, []).append((node, self.func))
        if method_base is not None and callee.kind == "unknown" and not (
            not method_base.is_tensor and is_model_like(dotted_name(func))
        ):
            return self.method_call(node, method_base, func.attr.value, args, kwargs)
        return self.apply(node, callee, args, kwargs)

    def with_attributes_set(self, obj: Value, receiver: str, method: FunctionInfo) -> Value:
        """`self.forward(); self.backward_G()`: the attributes that earlier calls and assignments here set on
        the receiver (`self.pred_fake`), where the method reads them, travel with it."""
        if obj.kind not in ("instance", "model") or not isinstance(obj.info, ClassInfo):
            return obj
        held = {attr: self.env[f"{receiver}.{attr}"] for attr in method.attributes_read if f"{receiver}.{attr}" in self.env}
        if not held:
            return obj
        fields = dict(zip(obj.keys, obj.items)) | held
        return obj.with_(keys=tuple(fields), items=tuple(fields.values()))

    def mutate(self, func: cst.Attribute, base: Value, args) -> None:
        """`layers.append(nn.ReLU())`, `self.model.add_module("act", nn.Sigmoid())`: the receiver grows."""
        receiver = dotted_name(func.value)
        name = func.attr.value
        if base.is_keyed and receiver in self.env and name in ("update", "setdefault", "pop", "popitem", "clear"):
            self.env[receiver] = UNKNOWN  # its items are no longer known
            return
        container = base.kind == "tuple" or base.kind == "layer" and base.qualname in api.MODULE_CONTAINERS
        if receiver is None or not container or receiver not in self.env:
            return
        if name == "append" and len(args) == 1:
            added = (args[0],)
        elif name == "add_module" and len(args) == 2:
            added = (args[1],)
        elif name == "extend" and len(args) == 1 and args[0].kind == "tuple":
            added = args[0].items
        else:
            return
        self.env[receiver] = base.with_(items=base.items + added)

    def learn_from_use(self, func: cst.Attribute, base: Value) -> None:
        """`self.actor.parameters()`, `target_net.load_state_dict(...)`: only modules have these, so an
        object of unknown class used so is a model."""
        receiver = dotted_name(func.value)
        if base.kind not in ("unknown", "ref") or receiver is None or func.attr.value not in api.MODULE_ONLY_METHODS:
            return
        if func.attr.value == "load_state_dict" and api.NOT_A_MODULE_NAME.search(receiver.rsplit(".", 1)[-1]):
            return  # optimizers, schedulers and scalers load state dicts too
        self.env[receiver] = Value(kind="model")

    def known_dotted(self, dotted: str) -> Value | None:
        """What `a.b` was assigned in this function, or at module level."""
        if dotted in self.env:
            return self.env[dotted]
        if self.func is not None and dotted in self.fa.module_env and dotted.split(".")[0] not in self.env:
            return self.fa.module_env[dotted]
        return None

    def attribute_of(self, base: Value, attr: str) -> Value:
        """`self.fc` / `model.encode`: an attribute set in `__init__`, or a method bound to `base`."""
        if base.keys and base.kind != "dict" and attr in base.keys:  # set from the arguments it was built with
            return base.items[base.keys.index(attr)]
        if base.kind == "super" and isinstance(base.info, ClassInfo) and base.bound is not None:
            for cls in base.info.base_classes():  # `super().__init__`: the first base that has it, on our `self`
                method = cls.method(attr)
                if method is not None:
                    return Value(kind="function", info=method, bound=base.bound)
            return UNKNOWN
        if base.kind == "class" and isinstance(base.info, ClassInfo):  # `Config.criterion`; methods are unbound here
            return base.info.attrs().get(attr, UNKNOWN)
        if base.kind in ("instance", "model") and isinstance(base.info, ClassInfo):
            attrs = base.info.attrs()
            if attr in attrs:
                return attrs[attr]
            method = base.info.method(attr)
            if method is not None:
                return Value(kind="function", info=method, bound=base)
        return UNKNOWN

    def named_attribute(self, base: Value, name: str) -> Value:
        """`getattr(nn, "Softmax")`, `getattr(self, "head")`: the attribute a known string names."""
        if base.kind == "ref" and base.qualname and name.isidentifier():
            return Value(kind="ref", qualname=f"{base.qualname}.{name}")
        return self.attribute_of(base, name)

    def method_call(self, node: cst.Call, base: Value, name: str, args, kwargs) -> Value:
        if base.kind in ("model", "criterion", "layer") and name in ("to", "cuda", "cpu", "float", "double", "half", "train", "eval", "requires_grad_"):
            return base
        if base.kind in ("model", "criterion", "layer") and name == "forward":
            return self.apply(node, base, args, kwargs)
        if base.kind == "dict":
            if name == "values":
                return Value(kind="tuple", items=base.items)
            if name == "items":
                return Value(kind="tuple", items=tuple(Value(kind="tuple", items=(UNKNOWN, item)) for item in base.items))
            if name == "get" and args:
                return dict_item(base, literal(node.args[0].value))
            return UNKNOWN
        if base.kind in ("ref", "class", "function", "optimizer", "scheduler", "str", "number"):
            return UNKNOWN
        graph = base.graph if base.is_tensor else None
        if name in ("softmax", "log_softmax", "sigmoid"):
            return Value(kind="tensor", activation=name, origin=node, graph=graph, source=base.source)
        if name == "sigmoid_" and base.is_tensor:  # in place: the receiver holds probabilities from now on
            out = base.with_(activation="sigmoid", origin=node)
            receiver = dotted_name(node.func.value)
            if receiver in self.env:
                self.env[receiver] = out
            return out
        if name == "exp" and base.activation == "log_softmax":
            return base.with_(activation="softmax", origin=node)
        if name == "exp" and base.is_tensor:
            return Value(kind="tensor", activation="exp", origin=node, graph=graph, source=base.source)
        if name == "log" and base.activation == "softmax":
            return base.with_(activation="log_softmax", origin=node)
        if name == "get_normalized_probs" and args:  # fairseq-style models: (log-)probabilities of an output
            log_probs = literal(node.args[1].value) if len(node.args) > 1 else None
            given = next((a.value for a in node.args if a.keyword is not None and a.keyword.value == "log_probs"), None)
            log_probs = literal(given) if given is not None else log_probs
            if log_probs in (True, False):
                return Value(kind="tensor", activation="log_softmax" if log_probs else "softmax", origin=node,
                             graph=args[0].graph, source=args[0].source)
        if name == "topk" and base.kind == "unknown":  # a tensor-only method: indices are int64
            return Value(kind="tuple", items=(Value(kind="tensor"), Value(kind="tensor", graph=False, dtype="int64")))
        if name in ("item", "tolist", "numpy") and base.kind == "unknown":  # whatever it was called on: no graph
            return NUMBER
        if not base.is_tensor:
            return UNKNOWN
        if name == "detach":
            return base.with_(graph=False)
        if name in ("item", "tolist", "numpy") or name in api.SHAPE_METHODS:
            return NUMBER
        if name in api.DTYPE_METHODS:
            return base.with_(dtype=api.DTYPE_METHODS[name])
        if name in api.PRESERVING_METHODS:
            dtype = base.dtype
            if name in ("to", "type") and args and args[0].kind == "ref":
                dtype = api.DTYPE_NAMES.get((args[0].qualname or "").rsplit(".", 1)[-1], dtype)
            keep_shape = name in ("cuda", "cpu", "to", "contiguous", "clone")
            return base.with_(dtype=dtype, shape=base.shape if keep_shape else None, image=base.image and keep_shape)
        if name in ("sum", "mean"):
            total = "exp_sum" if name == "sum" and base.activation == "exp" else None
            return Value(kind="tensor", graph=graph, is_loss=base.is_loss, source=base.source, activation=total)
        if name in api.VALUES_AND_INDICES and (args or kwargs or name in ("topk", "sort", "kthvalue")):
            values = Value(kind="tensor", graph=graph, source=base.source, dtype=base.dtype)
            return Value(kind="tuple", items=(values, Value(kind="tensor", graph=False, dtype="int64")))
        if name in api.INDEX_RESULTS:
            return Value(kind="tensor", graph=False, dtype="int64")
        if name in api.NEW_TENSOR_METHODS:  # `y.new_ones(y.shape)`: a fresh tensor, only its dtype and device are y's
            given = next((literal(a.value) for a in node.args if a.keyword and a.keyword.value == "requires_grad"), False)
            return Value(kind="tensor", graph=given if isinstance(given, bool) else None, dtype=base.dtype)
        if name in ("div", "true_divide", "divide") and "rounding_mode" not in kwargs:
            return Value(kind="tensor", graph=graph, source=base.source,
                         dtype=api.result_dtype(base, args[0] if args else UNKNOWN, "/"))
        if name in api.DTYPE_KEEPING or name in ("div", "divide", "floor_divide"):
            return Value(kind="tensor", graph=graph, source=base.source, dtype=base.dtype)
        if name in ("requires_grad_",):
            return base.with_(graph=True)
        return Value(kind="tensor", graph=graph, source=base.source)

    def apply(self, node: cst.Call, callee: Value, args, kwargs) -> Value:
        first = args[0] if args else kwargs.get("input", UNKNOWN)
        kind = callee.kind
        if kind == "ref":
            return self.call_ref(node, callee.qualname or "", args, kwargs)
        if kind == "class" and isinstance(callee.info, ClassInfo):
            instance = Value(kind="model" if callee.info.is_module() else "instance", qualname=callee.info.key,
                             info=callee.info)
            return self.fa.construct(instance, args, kwargs, self)
        if kind == "record_type":  # a namedtuple holds its fields in order
            if callee.keys and (kwargs or len(args) == len(callee.keys)):
                values = dict(zip(callee.keys, args)) | kwargs
                return Value(kind="tuple", keys=callee.keys, items=tuple(values.get(k, UNKNOWN) for k in callee.keys))
            return Value(kind="tuple", items=tuple(args))
        if kind == "instance" and isinstance(callee.info, ClassInfo) and callee.info.method("__call__") is not None:
            return self.fa.call_function(callee.info.method("__call__"), args, kwargs, callee, self)
        if kind == "criterion":
            return Value(kind="tensor", is_loss=True, graph=loss_graph(self, args), source=first.source)
        if kind == "layer":
            out = self.apply_layer(callee, first, node)
            if api.has_parameters(callee.qualname) and out.is_tensor:
                out = out.with_(graph=self.model_output_graph(), source=dotted_name(node.func) or out.source)
            return out
        if kind == "model":
            source = dotted_name(node.func) if not isinstance(node.func, cst.Attribute) or node.func.attr.value != "forward" else dotted_name(node.func.value)
            out, evaluated = TENSOR, False
            if isinstance(callee.info, ClassInfo):
                forward = callee.info.method("forward")
                if forward is not None:
                    out = self.fa.call_function(forward, args, kwargs, callee, self)
                    evaluated = out.kind != "unknown"
                    if not evaluated:
                        out = TENSOR
            elif callee.info is None:
                out = Value(kind="tensor", activation=callee.activation)  # a torchvision model's logits
            graph = self.model_output_graph()
            if out.kind in ("tuple", "dict") or out.keys:
                return out.with_(items=tuple(_model_output(i, graph, source, evaluated) if i.is_tensor else i
                                             for i in out.items))
            return _model_output(out, graph, source, evaluated)
        if kind == "unknown" and isinstance(node.func, (cst.Name, cst.Attribute)):
            # An unknown callable named like a model, or fed tensors, gives a tensor of unknown kind.
            name = dotted_name(node.func)
            if is_model_like(name) and _class_like(name):
                return Value(kind="model")  # `Net()` of a class defined elsewhere: a model built, not run
            if is_model_like(name):
                return Value(kind="tensor", graph=self.model_output_graph(), source=name)
            if any(a.is_tensor for a in args):
                return Value(kind="tensor", graph=None)
        return UNKNOWN

    def apply_layer(self, layer: Value, value: Value, node) -> Value:
        qualname = layer.qualname or ""
        if qualname in ("torch.nn.Sequential",):
            for item in layer.items:
                value = self.apply_layer(item, value, node) if item.kind in ("layer", "model") else Value(kind="tensor")
            return value
        if layer.kind == "model":
            return self.apply(node, layer, [value], {})
        if qualname in api.IMAGE_TRANSFORM_CLASSES or qualname == "torchvision.transforms.Compose" and layer.image:
            return Value(kind="tensor", image=True, shape=(None, None, None), graph=False)
        activation = api.LAYER_ACTIVATION.get(qualname)
        if activation is not None:
            return Value(kind="tensor", activation=activation, origin=layer.origin or node, graph=value.graph,
                         source=value.source)
        if qualname in api.TRANSPARENT_LAYERS:
            return value
        return Value(kind="tensor", graph=value.graph, source=value.source)


def _class_like(dotted: str) -> bool:
    """`Net`, `models.ResNet`: a class name (capitalised, with lower case), not `G` or `netD`."""
    last = dotted.rsplit(".", 1)[-1]
    return last[:1].isupper() and any(c.islower() for c in last)


def _model_output(out: Value, graph: object, source: str | None, evaluated: bool) -> Value:
    """An output of a model's forward: it carries the graph of the grad mode the model runs in, unless
    the forward made it without one (`labels = torch.arange(n)` returned beside the logits), or, where
    its forward was followed, from values whose graph is unknown."""
    keep = out.graph is False or evaluated and out.graph is None
    return out.with_(graph=out.graph if keep else graph, source=source)

