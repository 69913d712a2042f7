"""One abstract evaluation of a function body or module body: statements and expressions. What
calls do is in `semantics`."""
from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.backward import BackwardSemantics
from torchcheck.analysis.branches import case_taken, if_taken
from torchcheck.analysis.containers import ContainerSemantics
from torchcheck.analysis.grad_mode import GRAD_OFF, GRAD_ON, decorated_grad
from torchcheck.analysis.imports import child_blocks, dotted_name, iter_statements
from torchcheck.analysis.library_calls import LibraryCallSemantics
from torchcheck.analysis.semantics import CallSemantics
from torchcheck.analysis.structure import ClassInfo, FunctionInfo
from torchcheck.analysis.syntax import literal, string_value
from torchcheck.analysis.train_mode import mode_of_chain
from torchcheck.analysis.values import (
    INHERIT,
    NUMBER,
    TENSOR,
    UNKNOWN,
    Value,
    combine_graph,
    dict_item,
    join,
)
from torchcheck.walk import all_subclasses, children

if TYPE_CHECKING:
    from torchcheck.analysis.dataflow import FileAnalysis

MAX_CALL_DEPTH = 4
EXPRESSION_TYPES = frozenset(all_subclasses(cst.BaseExpression))
BLOCK_TYPES = frozenset(all_subclasses(cst.BaseStatement) | all_subclasses(cst.BaseSuite))


class Frame(ContainerSemantics, CallSemantics, LibraryCallSemantics, BackwardSemantics):
    """One evaluation of a function body (or the module body)."""

    def __init__(self, analysis: FileAnalysis, func: FunctionInfo | None, record: bool, depth: int = 0, grad=None):
        self.fa = analysis
        self.func = func
        self.record = record
        self.depth = depth
        self.env: dict[str, Value] = {}
        self.returns: list[Value] = []
        self.yield_grads: list[str] = []  # the grad mode at each `yield`: a @contextmanager's block runs in it
        self.siblings: dict[str, tuple[str, ...]] = {}  # names unpacked together from one call's result
        self.returned = False  # the path being evaluated has returned: what follows is not on it
        self.modes: dict[str, frozenset] = {}
        self.final_call: cst.Call | None = None  # `defer_call`
        if func is not None:
            analysis.ensure_module_env()
        if grad is not None:
            self.grad = grad
        elif func is None:
            self.grad = GRAD_ON
        else:
            self.grad = decorated_grad(func) or INHERIT

    def run(self) -> None:
        body = self.fa.module if self.func is None else self.func.node.body
        if self.record and self.func is not None and not self.fa.encloses_functions(self.func):
            last = list(iter_statements(body))[-1:]
            if last and type(last[0]) is cst.Expr and type(last[0].value) is cst.Call:
                self.final_call = last[0].value  # `self.post_init()`: nothing after it reads what it sets
        self.exec_block(body)

    # -- statements ----------------------------------------------------------------------------
    def exec_block(self, block) -> None:
        for stmt in iter_statements(block):
            if self.returned:
                break
            self.exec(stmt)

    def exec(self, stmt: cst.CSTNode) -> None:
        kind = type(stmt)  # libcst's classes are ABCs: isinstance() is slow on this hot path
        if kind is cst.Assign:
            value = self.eval(stmt.value)
            for target in stmt.targets:
                self.bind(target.target, value)
                self.set_mode(dotted_name(target.target), mode_of_chain(stmt.value))
                if type(target.target) is cst.Tuple and type(stmt.value) is cst.Call:
                    names = tuple(n for n in (dotted_name(e.value) for e in target.target.elements) if n)
                    self.siblings.update(dict.fromkeys(names, names))
        elif kind is cst.AnnAssign:
            if stmt.value is not None:
                self.bind(stmt.target, self.eval(stmt.value))
        elif kind is cst.AugAssign:
            current = self.eval(stmt.target)
            self.bind(stmt.target, self.binop(current, self.eval(stmt.value), stmt.operator))
        elif kind is cst.Expr:
            self.eval(stmt.value)
            if type(stmt.value) is cst.Call:
                self.note_backward(stmt.value)
        elif kind is cst.Return:
            self.returns.append(self.eval(stmt.value) if stmt.value is not None else UNKNOWN)
            self.returned = True
        elif kind is cst.If:
            self.eval(stmt.test)
            taken = None if self.record else if_taken(self, stmt.test)
            if taken is None:
                self.exec_branches(child_blocks(stmt), exhaustive=stmt.orelse is not None)
            elif taken or stmt.orelse is not None:
                self.exec_block(child_blocks(stmt)[0 if taken else 1])
        elif kind is cst.Match:
            case = None if self.record else case_taken(self, stmt)
            if case is None:
                self.exec_branches(child_blocks(stmt), exhaustive=False)
            else:
                self.exec_block(case.body)
        elif kind is cst.Try or kind.__name__ == "TryStar":
            self.exec_branches(child_blocks(stmt), exhaustive=False)
        elif kind is cst.For:
            self.exec_for(stmt)
        elif kind is cst.While:
            self.eval(stmt.test)
            for block in child_blocks(stmt):
                self.exec_block(block)
            self.returned = False  # the loop may not have run
        elif kind is cst.With:
            self.exec_with(stmt)
        elif kind is cst.FunctionDef:
            info = self.fa.function_of_node.get(stmt)
            self.env[stmt.name.value] = Value(kind="function", info=info)
        elif kind is cst.ClassDef and self.func is not None:  # a class defined inside a function
            cls = self.fa.class_of_node[stmt]
            self.env[stmt.name.value] = Value(kind="class", qualname=cls.key, info=cls)
        elif kind is cst.Assert:
            self.eval(stmt.test)
        elif kind is cst.Del:
            pass

    def exec_branches(self, blocks, exhaustive: bool) -> None:
        start_env, start_modes = dict(self.env), dict(self.modes)
        ends = []
        for block in blocks:
            self.env, self.modes, self.returned = dict(start_env), dict(start_modes), False
            self.exec_block(block)
            if not self.returned:  # a branch that returned does not reach the code after it
                ends.append((self.env, self.modes))
        self.returned = exhaustive and not ends
        if not exhaustive or not ends:
            ends.append((start_env, start_modes))
        # A name bound on some paths only holds, wherever it is defined, what those paths bound.
        env = dict(ends[0][0])
        for end_env, _ in ends[1:]:
            for key, value in end_env.items():
                held = env.get(key, value)
                env[key] = value if held is value else join(held, value)  # most names hold the same on every path
        modes = ends[0][1]
        for _, other_modes in ends[1:]:
            modes = {k: v | other_modes.get(k, frozenset({"unknown"})) for k, v in modes.items()} | {
                k: v | frozenset({"unknown"}) for k, v in other_modes.items() if k not in modes
            }
        self.env, self.modes = env, modes

    def exec_with(self, stmt: cst.With) -> None:
        saved, modes = self.grad, self.modes
        handed: list[str] = []
        for item in stmt.items:
            value = self.eval(item.item)
            if value.kind == "grad_ctx":
                self.grad = value.qualname if value.qualname in (GRAD_ON, GRAD_OFF) else saved
            elif value.kind == "unknown_grad_ctx":
                self.grad = GRAD_OFF  # set_grad_enabled(<expr>): the train/val phase pattern; trust it
            else:
                handed += self._handed_to_context(item.item)
            if item.asname is not None:
                self.bind(item.asname.name, UNKNOWN)
        for receiver in handed:  # `with eval_mode(model):` may put it in eval mode for the block
            self.set_mode(receiver, modes.get(receiver, frozenset({"unknown"})) | {"eval"})
        self.exec_block(stmt.body)
        self.grad = saved
        for receiver in handed:  # and puts it back, its submodules' modes too
            self.modes = {k: v for k, v in self.modes.items() if not _under(k, receiver)} | {
                k: v for k, v in modes.items() if _under(k, receiver)}

    def _handed_to_context(self, expression: cst.BaseExpression) -> list[str]:
        """What a context manager of the project or another library is handed (`eval_mode(model)`),
        which it may switch to eval mode; torch's own (`summon_full_params(model)`) do not."""
        if type(expression) is not cst.Call or (self.fa.imports.qualname(expression.func) or "").startswith("torch."):
            return []
        return [name for arg in expression.args if not arg.star and (name := dotted_name(arg.value)) is not None]

    def set_mode(self, receiver: str | None, state: frozenset | None) -> None:
        if receiver is None or state is None:
            return
        # A new dict, never mutated: `modes_at` shares it between calls.
        self.modes = {k: v for k, v in self.modes.items() if not k.startswith(receiver + ".")} | {receiver: state}

    def bind(self, target: cst.CSTNode, value: Value) -> None:
        if type(target) is cst.Name:
            self.env[target.value] = value
        elif type(target) is cst.Attribute:
            name = dotted_name(target)
            if name is not None:
                self.env[name] = value
                self.replace_submodule(target, value)
        elif type(target) is cst.Subscript:
            if self.record and dotted_name(target.value) is not None:
                self.eval(target.value)  # `conv.weight[0] = w`: what the indexed object holds, for the rules
            self.set_item(target, value)
            if type(target.value) is cst.Attribute:
                self.replace_submodule(target.value, value)  # `model.classifier[6] = nn.Linear(4096, 2)`
        elif type(target) in (cst.Tuple, cst.List):
            elements = target.elements
            for i, element in enumerate(elements):
                if type(element) is cst.StarredElement:
                    self.bind(element.value, UNKNOWN)
                    continue
                item = value.items[i] if value.kind == "tuple" and i < len(value.items) else UNKNOWN
                self.bind(element.value, item)
        if self.record:
            self.fa.values[target] = value
            self.fa.scope[target] = self.func

    def replace_submodule(self, target: cst.Attribute, layer: Value) -> None:
        """`model.fc = nn.Sequential(..., nn.LogSoftmax(1))`: a new head changes what the model returns."""
        owner = dotted_name(target.value)
        model = self.env.get(owner) if owner else None
        if model is None or model.kind != "model":
            return
        if isinstance(model.info, ClassInfo):
            params = self.func.param_names() if self.func is not None and self.func.cls is not None else []
            if owner.split(".")[0] not in params[:1]:  # not a module building itself
                self.env[owner] = Value(kind="model", qualname=model.qualname)  # its forward is no longer known
        elif model.activation is not None:  # a torchvision classifier
            if target.attr.value in api.TORCHVISION_HEADS:
                out = self.apply_layer(layer, TENSOR, target) if layer.kind in ("layer", "model") else UNKNOWN
                self.env[owner] = model.with_(activation=out.activation)

    def element_of(self, iterable: Value) -> Value:
        if (iterable.kind == "tuple" or iterable.qualname == "torch.nn.ModuleList") and iterable.items:
            merged = iterable.items[0]
            for item in iterable.items[1:]:
                merged = join(merged, item)
            return merged
        return UNKNOWN

    # -- expressions ---------------------------------------------------------------------------
    def eval(self, node: cst.CSTNode | None) -> Value:
        if node is None:
            return UNKNOWN
        value = self._eval(node)
        if self.record:
            self.fa.values[node] = value
            self.fa.scope[node] = self.func
        return value

    def _eval(self, node: cst.CSTNode) -> Value:
        kind = type(node)  # as in exec()
        if kind is cst.Name:
            return self.lookup(node)
        if kind is cst.Attribute:
            return self.attribute(node)
        if kind is cst.Call:
            return self.call(node)
        if kind in (cst.Integer, cst.Float, cst.Imaginary):
            return NUMBER
        if kind is cst.SimpleString:
            text = string_value(node)
            return Value(kind="str", text=text if isinstance(text, str) else None)
        if kind in (cst.ConcatenatedString, cst.FormattedString):
            return Value(kind="str")
        if kind is cst.Dict:
            return self.dict_display(node)
        if kind in (cst.Tuple, cst.List):
            items = []
            for element in node.elements:
                item = self.eval(element.value)
                items.append(UNKNOWN if isinstance(element, cst.StarredElement) else item)
            return Value(kind="tuple", items=tuple(items))
        if kind is cst.BinaryOperation:
            return self.binop(self.eval(node.left), self.eval(node.right), node.operator)
        if kind is cst.UnaryOperation:
            inner = self.eval(node.expression)
            if type(node.operator) is cst.Not:
                return NUMBER
            if type(node.operator) is cst.BitInvert:  # a mask's or an integer's complement: no graph
                return Value(kind="tensor", graph=False, source=inner.source) if inner.is_tensor else UNKNOWN
            return inner.with_(activation=None, origin=None) if inner.is_tensor else inner
        if kind is cst.Subscript:
            return self.subscript(node)
        if kind is cst.IfExp:
            self.eval(node.test)
            return join(self.eval(node.body), self.eval(node.orelse))
        if kind is cst.Await:
            return self.eval(node.expression)
        if kind is cst.Yield:
            self.yield_grads.append(self.grad)
        if kind is cst.Lambda:
            self.eval_lambda(node)
        else:
            self.eval_children(node)  # comprehensions, comparisons, f-strings...: record the calls inside
        return UNKNOWN

    def eval_lambda(self, node: cst.Lambda) -> None:
        """Record what the body's expressions hold, its parameters unknown."""
        saved = self.env
        self.env = dict(saved) | {p.name.value: UNKNOWN for p in (*node.params.params, *node.params.kwonly_params)}
        self.eval(node.body)
        self.env = saved

    def eval_children(self, node: cst.CSTNode) -> None:
        for child in children(node):
            kind = type(child)
            if kind in EXPRESSION_TYPES:
                self.eval(child)
            elif kind not in BLOCK_TYPES:
                self.eval_children(child)

    def lookup(self, node: cst.Name) -> Value:
        name = node.value
        if name in self.env:
            return self.env[name]
        if name in ("True", "False", "None"):
            return NUMBER
        if self.func is not None and name in self.fa.module_env:
            return self.fa.module_env[name]
        if name in self.fa.classes:
            return Value(kind="class", qualname=self.fa.classes[name].key, info=self.fa.classes[name])
        if name in self.fa.functions:
            return Value(kind="function", info=self.fa.functions[name])
        if name in ("sum", "list", "tuple", "dict", "getattr", "super") and name not in self.fa.imports.aliases:
            return Value(kind="ref", qualname=name)  # the builtin
        return self.imported(node)

    def imported(self, node: cst.CSTNode) -> Value:
        qualname = self.fa.imports.qualname(node)
        if qualname is None:
            return UNKNOWN
        info = self.fa.project.find_class(qualname, self.fa)
        if info is not None:
            return Value(kind="class", qualname=info.key, info=info)
        function = self.fa.project.find_function(qualname, self.fa)
        if function is not None:
            return Value(kind="function", info=function)
        return Value(kind="ref", qualname=qualname)

    def attribute(self, node: cst.Attribute) -> Value:
        dotted = dotted_name(node)
        if dotted is not None:
            known = self.known_dotted(dotted)
            if known is not None:
                return known
            head = dotted.split(".")[0]
            if head not in self.env and (self.func is None or head not in self.fa.module_env):
                if head not in self.fa.classes and head not in self.fa.functions:
                    if head in self.fa.imports.aliases:
                        return self.imported(node)
        base = self.eval(node.value)
        attr = node.attr.value
        has_fields = base.keys and base.kind != "dict"  # a record, or an instance built with arguments
        if base.kind in ("instance", "model", "class") and isinstance(base.info, ClassInfo) or has_fields:
            return self.attribute_of(base, attr)
        if base.kind == "layer" and attr == "weight":
            return Value(kind="tensor", graph=True)
        if base.is_tensor:
            if attr == "data":
                return base.with_(graph=False, is_loss=False)
            if attr in ("T", "mT", "real"):
                return base
        return UNKNOWN

    def subscript(self, node: cst.Subscript) -> Value:
        base = self.eval(node.value)
        indices = []
        for element in node.slice:
            if isinstance(element.slice, cst.Index):
                index = self.eval(element.slice.value)
                is_int = isinstance(element.slice.value, cst.Integer)
                indices.append(literal(element.slice.value) if is_int else index.text)
            else:
                indices.append(None)
        if base.is_keyed:
            # `outputs["probs"]`, `ACTIVATIONS[name]`; any other key: what every item holds
            return dict_item(base, indices[0] if len(indices) == 1 else None)
        if (base.kind == "tuple" or base.qualname in api.MODULE_CONTAINERS) and len(indices) == 1 \
                and isinstance(indices[0], int):
            i = indices[0]  # `outputs[0]`, `self.layers[-1]`
            return base.items[i] if -len(base.items) <= i < len(base.items) else UNKNOWN
        if base.is_tensor:
            shape = base.shape
            if shape is not None and len(indices) == 1 and isinstance(indices[0], int):
                shape = shape[1:]
            else:
                shape = None
            return base.with_(shape=shape, image=False, is_loss=False)
        return UNKNOWN

    def binop(self, left: Value, right: Value, operator=None) -> Value:
        if left.is_tensor or right.is_tensor:
            # `e / e.sum(dim=1, keepdim=True)` with `e = torch.exp(x)`: a softmax written out
            softmax = isinstance(operator, cst.Divide) and left.activation == "exp" and right.activation == "exp_sum"
            return Value(
                kind="tensor",
                activation="softmax" if softmax else None,
                origin=left.origin if softmax else None,
                graph=combine_graph(left.graph, right.graph),
                is_loss=left.is_loss or right.is_loss,
                source=left.source or right.source,
                arithmetic=True,
                backpropagated=left.backpropagated or right.backpropagated,
                dtype=api.result_dtype(left, right, "/" if isinstance(operator, (cst.Divide, cst.DivideAssign)) else ""),
            )
        if left.kind == "tuple" and right.kind == "tuple":
            return left.with_(items=left.items + right.items)  # list concatenation
        if left.kind == "number" and right.kind == "number":
            return NUMBER
        return UNKNOWN

    def model_output_graph(self) -> object:
        return True if self.grad == GRAD_ON else False if self.grad == GRAD_OFF else INHERIT


def _under(key: str, receiver: str) -> bool:
    """Whether a mode key is the receiver's or one of its submodules' (`model`, `model.encoder`)."""
    return key == receiver or key.startswith(receiver + ".")
