"""Values held by key or in order: dicts with string keys, and loops over a stack of layers. Mixed
into `Frame`."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.imports import child_blocks, dotted_name
from torchcheck.analysis.syntax import literal, string_key
from torchcheck.analysis.values import UNKNOWN, Value
from torchcheck.walk import descendants

MAX_UNROLLED_LAYERS = 32


class ContainerSemantics:
    def exec_for(self, stmt: cst.For) -> None:
        iterable = self.eval(stmt.iter)
        start = dict(self.env)
        self.bind(stmt.target, self.element_of(iterable))
        for block in child_blocks(stmt):
            self.exec_block(block)
        layers = iterable.items if iterable.qualname in api.MODULE_CONTAINERS or iterable.kind == "tuple" else ()
        if 0 < len(layers) <= MAX_UNROLLED_LAYERS and all(item.kind in ("layer", "model") for item in layers) \
                and not any(isinstance(node, cst.Break) for node in descendants(stmt.body)):
            # `for layer in self.layers: x = layer(x)` applies the layers in turn: the last one decides what x
            # holds. The pass above recorded what each expression holds on any iteration; this one, recording
            # nothing, gives the state after the loop.
            recording, self.record, self.env = self.record, False, start
            for layer in layers:
                self.bind(stmt.target, layer)
                self.exec_block(stmt.body)
            if stmt.orelse is not None:
                self.exec_block(stmt.orelse.body)
            self.record = recording
        self.returned = False  # the loop may not have run

    def dict_display(self, node: cst.Dict) -> Value:
        """`{"logits": x, "probs": p}`: a dict whose keys are all strings holds its values by key."""
        keys, items = [], []
        for element in node.elements:
            if isinstance(element, cst.DictElement):
                self.eval(element.key)
                keys.append(literal(element.key))
            else:
                keys.append(None)  # `**other`
            item = self.eval(element.value)
            if isinstance(keys[-1], str) and "loss" in keys[-1].lower() and item.kind in ("tensor", "unknown"):
                item = item.with_(kind="tensor", is_loss=True)  # `{"loss_cls": ..., "loss_box": ...}`
            items.append(item)
        if not all(isinstance(key, str) for key in keys):
            return UNKNOWN
        return Value(kind="dict", keys=tuple(keys), items=tuple(items))

    def set_item(self, target: cst.Subscript, value: Value) -> None:
        """`outputs["probs"] = F.softmax(x, 1)`: a dict of known keys gains or changes one."""
        owner = dotted_name(target.value)
        key = string_key(target)
        bag = self.env.get(owner) if owner else None
        if bag is None or not bag.is_keyed:
            return
        if key is None:
            self.env[owner] = UNKNOWN
        elif key in bag.keys:
            i = bag.keys.index(key)
            self.env[owner] = bag.with_(items=bag.items[:i] + (value,) + bag.items[i + 1:])
        else:
            self.env[owner] = bag.with_(keys=bag.keys + (key,), items=bag.items + (value,))
