"""Abstract values: what an expression holds, as far as the rules care."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

# Graph states of a tensor: it carries an autograd graph, it does not, unknown, or it does
# exactly when the enclosing function's callers run it with grad enabled.
INHERIT = "inherit"


# Never changed once made (`with_` makes a changed copy): values are shared by every answer that holds
# them. Not frozen only because a frozen dataclass is six times slower to make, and evaluation makes
# millions.
@dataclass(unsafe_hash=True)
class Value:
    """What the analysis knows of a value: its kind and, by kind, the facts the rules ask about."""

    # tensor | number | str | criterion | model | optimizer | scheduler | scaler | layer | ref | class |
    # function | instance | tuple | dict | record_type (a namedtuple class) | super (`super()`) | grad_ctx | unknown
    kind: str = "unknown"
    qualname: str | None = None  # imported object (ref), loss class (criterion), layer or model class
    activation: str | None = None  # tensors: softmax | log_softmax | sigmoid | logits | exp | exp_sum (a sum of exp)
    graph: object = None  # True | False | None | INHERIT
    is_loss: bool = False
    source: str | None = None  # tensors: the model expression they came out of; optimizers: the model they update
    dtype: str | None = None
    shape: tuple | None = None
    image: bool = False
    items: tuple = ()  # tuples and lists: their items; Sequential and ModuleList: their layers; dicts: values
    text: str | None = None  # str: the string, when known
    keys: tuple = ()  # dicts: the literal key of each item (None where not a literal); instances: attributes set from arguments
    arithmetic: bool = False  # tensors: computed by arithmetic (`r + gamma * q`), not returned by a model
    # tensors: backward() already ran through it (on it, or on the total it is a term of)
    backpropagated: bool = False
    origin: object = field(default=None, compare=False)  # node that applied the activation; made a layer or criterion
    info: object = field(default=None, compare=False)  # ClassInfo / FunctionInfo
    bound: object = field(default=None, compare=False)  # `self` value of a bound method

    def with_(self, **changes) -> Value:
        if not changes.keys() <= _FIELDS:
            raise TypeError(f"Value has no field {sorted(changes.keys() - _FIELDS)}")
        changed = object.__new__(Value)
        changed.__dict__.update(self.__dict__, **changes)
        return changed

    @property
    def is_tensor(self) -> bool:
        return self.kind == "tensor"

    @property
    def is_keyed(self) -> bool:
        """A dict, or an `nn.ModuleDict`: items looked up by key."""
        return self.kind == "dict" or self.qualname == "torch.nn.ModuleDict"


_FIELDS = frozenset(f.name for f in fields(Value))
UNKNOWN = Value()
NUMBER = Value(kind="number", graph=False)
TENSOR = Value(kind="tensor")


def join(a: Value, b: Value) -> Value:
    """Merge the values of two control-flow paths, keeping only what both agree on."""
    if a is b:
        return a
    if a == b:  # a criterion or layer built by two calls: with which options is not known
        return a if a.origin is b.origin or a.is_tensor else a.with_(origin=None)
    if a.kind in ("model", "instance") and a.info is not None and a.info is b.info and a.items != b.items:
        return Value(kind=a.kind, qualname=a.qualname, info=a.info)  # built with other arguments: the class
    if a.kind != b.kind or len(a.items) != len(b.items) or a.keys != b.keys:
        return UNKNOWN
    if a.items != b.items and a.kind not in ("tuple", "dict"):
        return UNKNOWN
    return Value(
        kind=a.kind,
        qualname=a.qualname if a.qualname == b.qualname else None,
        activation=a.activation if a.activation == b.activation else None,
        graph=_join_graph(a.graph, b.graph),
        is_loss=a.is_loss and b.is_loss,
        source=a.source if a.source == b.source or b.graph is False else b.source if a.graph is False else None,
        dtype=a.dtype if a.dtype == b.dtype else None,
        shape=a.shape if a.shape == b.shape else None,
        image=a.image and b.image,
        items=tuple(join(x, y) for x, y in zip(a.items, b.items)),
        keys=a.keys,
        arithmetic=a.arithmetic or b.arithmetic,
        backpropagated=a.backpropagated and b.backpropagated,
        origin=a.origin if a.origin is b.origin or (a.is_tensor and a.activation == b.activation) else None,
        info=a.info if a.info is b.info else None,
    )


def dict_item(mapping: Value, key) -> Value:
    """The item of a known key, or for a key not known statically what every item has in common."""
    if key is not None:
        return mapping.items[mapping.keys.index(key)] if key in mapping.keys else UNKNOWN
    if not mapping.items:
        return UNKNOWN
    merged = mapping.items[0]
    for item in mapping.items[1:]:
        merged = join(merged, item)
    return merged


def _join_graph(a: object, b: object) -> object:
    """A tensor that carries a graph on one path may carry one: True, or INHERIT, wins."""
    if a == b or True in (a, b):
        return True if True in (a, b) else a
    if INHERIT in (a, b) and {a, b} <= {INHERIT, False}:
        return INHERIT
    return None


def combine_graph(*graphs) -> object:
    if True in graphs:
        return True
    if INHERIT in graphs:
        return INHERIT
    if graphs and all(g is False for g in graphs):
        return False
    return None
