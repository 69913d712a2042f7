"""Facts read off the syntax alone: which argument binds a parameter, a literal's value."""
from __future__ import annotations

import libcst as cst

from torchcheck.walk import descendants


def argument(call: cst.Call, position: int, name: str | None = None) -> cst.Arg | None:
    """The argument given for parameter `name` at `position` (positional or keyword)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if 0 <= position < len(positional) and not any(a.star for a in call.args[: position + 1]):
        return positional[position]
    return None


def called_names(body: cst.CSTNode) -> set[str]:
    """The names called in `body`: `f` of `f(x)`, `step` of `self.step(x)`."""
    names = set()
    for node in descendants(body):
        if type(node) is cst.Call:
            if isinstance(node.func, cst.Name):
                names.add(node.func.value)
            elif isinstance(node.func, cst.Attribute):
                names.add(node.func.attr.value)
    return names


def literal(node: cst.CSTNode):
    if type(node) is cst.Integer:
        return int(node.value.replace("_", ""), 0) if not node.value.startswith("0") or node.value == "0" else None
    if type(node) is cst.Float:
        return float(node.value.replace("_", ""))
    if type(node) is cst.Name and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
        inner = literal(node.expression)
        return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else None
    if type(node) is cst.SimpleString:
        return string_value(node)
    return None


def string_value(node: cst.SimpleString) -> str | bytes | None:
    """What a string literal holds; a plain one is read without evaluating it (a file's docstrings
    and messages are many), and a long one with escapes is not read at all."""
    prefix = node.prefix.lower()
    body = node.value[len(prefix) + len(node.quote):-len(node.quote)]
    if "b" not in prefix and ("\\" not in body or "r" in prefix):
        return body
    return node.evaluated_value if len(body) <= 200 else None


def string_key(node: cst.Subscript) -> str | None:
    """`"probs"` of `out["probs"]`."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    key = literal(node.slice[0].slice.value)
    return key if isinstance(key, str) else None


def namedtuple_fields(call: cst.Call) -> tuple[str, ...]:
    """The field names of `namedtuple("Out", ["logits", "probs"])`, `namedtuple("Out", "logits probs")` or
    `NamedTuple("Out", [("logits", Tensor), ...])`; () when not literal."""
    fields = argument(call, 1, "field_names") or argument(call, 1, "fields")
    if fields is None:
        return ()
    value = literal(fields.value)
    if isinstance(value, str):
        return tuple(value.replace(",", " ").split())
    if not isinstance(fields.value, (cst.List, cst.Tuple)):
        return ()
    names = []
    for element in fields.value.elements:
        item = element.value
        if isinstance(item, cst.Tuple) and item.elements:
            item = item.elements[0].value
        name = literal(item)
        if not isinstance(name, str):
            return ()
        names.append(name)
    return tuple(names)


def infer_literal_dtype(node: cst.CSTNode) -> str | None:
    values = []

    def walk(n):
        if isinstance(n, (cst.List, cst.Tuple)):
            for element in n.elements:
                walk(element.value)
        else:
            values.append(literal(n))

    walk(node)
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float32"
    return None
