"""The shared dataflow layer: an abstract interpreter over a file's statements.

It answers, for any expression it evaluated, what the expression holds (a `Value`), and for any
call, the grad mode and the train/eval state of models at that point. Functions and classes
defined in the linted tree are followed: a model's `forward` (and `nn.Sequential` contents), a
helper that applies softmax, a criterion passed in by every caller. Evaluation is lazy: a file
whose rules never ask a question is never interpreted.

The layer is split by concern: `structure` (functions, classes, model attributes), `frame`
(statements and expressions), `semantics` (what calls of project code, models and methods do),
`summaries` (calls of project functions, and the arguments every caller passes),
`library_calls` (what torch, torchvision and standard-library calls return), `containers` (dicts
and layer stacks), `branches` (known strings choosing a path), `backward` (what a backward() call
teaches), `grad_mode` and `train_mode` (the context at a call), `syntax` (argument binding,
literals), `evaluation` (where evaluation code is).
"""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis.frame import Frame
from torchcheck.analysis.grad_mode import (
    GRAD_OFF,
    GRAD_ON,
    GRAD_UNKNOWN,
    GradModeQueries,
)
from torchcheck.analysis.imports import ImportTable, child_blocks, iter_statements
from torchcheck.analysis.pieces import (
    Cut,
    LineMap,
    Piece,
    parse_method,
    parse_piece,
    whole,
    whole_class,
)
from torchcheck.analysis.structure import ClassInfo, FunctionInfo, is_model_like
from torchcheck.analysis.summaries import CallSummaries, DeferredCall
from torchcheck.analysis.syntax import argument, called_names, literal
from torchcheck.analysis.train_mode import TrainModeQueries
from torchcheck.analysis.units import MODULE_UNIT
from torchcheck.analysis.values import UNKNOWN, Value

PARSE_ERRORS = (cst.ParserSyntaxError, ValueError, RecursionError, MemoryError)

__all__ = ["GRAD_OFF", "GRAD_ON", "GRAD_UNKNOWN", "ClassInfo", "FileAnalysis", "FunctionInfo", "argument",
           "is_model_like", "literal"]


class FileAnalysis(CallSummaries, GradModeQueries, TrainModeQueries):
    def __init__(self, module: cst.Module, imports: ImportTable, project, module_name: str = "",
                 cut: Cut | None = None) -> None:
        self.module = module  # with `cut`, its skeleton (see `pieces`) until `complete()`
        self._module_lines: LineMap = cut.lines if cut is not None else ((1, 0),)
        self._pieces = dict(cut.pieces) if cut is not None else {}  # not parsed yet
        self._method_pieces: dict[FunctionInfo, Piece] = {}  # of the classes parsed, the methods not parsed yet
        self._cut_methods: dict[str, list[str]] = {}  # of the pieces parsed, the methods cut out of each
        self._trees: list[tuple[cst.Module, LineMap]] = []  # the pieces parsed, each with where its lines are
        self._whole = cut is None
        self._unparsable = False
        self.imports = imports
        self.project = project
        self.module_name = module_name
        self.functions: dict[str, FunctionInfo] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.all_functions: list[FunctionInfo] = []
        self.function_of_node: dict[cst.FunctionDef, FunctionInfo] = {}
        self.class_of_node: dict[cst.ClassDef, ClassInfo] = {}
        self.units_read: set[str] = {MODULE_UNIT}  # the parts of this module its answers read (`units`)
        self._index(module, None, None, MODULE_UNIT)
        # the functions and classes of the stubs, by name (`self.functions` may name another, nested in an `if`)
        self._stubbed: dict[str, FunctionInfo | ClassInfo] = {
            stmt.name.value: self.function_of_node.get(stmt) or self.class_of_node[stmt]
            for stmt in module.body if type(stmt) in (cst.FunctionDef, cst.ClassDef) and stmt.name.value in self._pieces}
        self._class_code = {self._stubbed[name]: piece.code for name, piece in self._pieces.items() if piece.code}
        self.values: dict[cst.CSTNode, Value] = {}
        self.scope: dict[cst.CSTNode, FunctionInfo | None] = {}
        self.grad_at: dict[cst.CSTNode, str] = {}  # call -> on | off | inherit (lexical)
        self.modes_at: dict[cst.CSTNode, dict[str, frozenset]] = {}
        self.call_sites: dict[FunctionInfo, list[tuple[cst.Call, FunctionInfo | None]]] = {}
        self.module_calls: dict[FunctionInfo, list[tuple[cst.Call, FunctionInfo | None]]] = {}  # forward -> `m(x)`
        self.module_env: dict[str, Value] = {}
        self._evaluated = False
        self._module_env_state: str | None = None  # None, "running" or "done"
        self._in_progress: set = set()
        self._summaries: dict = {}
        self._entry_grad: dict[FunctionInfo, str] = {}
        self._called_grad: dict[FunctionInfo, str] = {}
        self._bound_used: dict[FunctionInfo, dict[str, Value]] = {}
        self._enclosing: set[FunctionInfo] | None = None  # functions with functions defined inside them
        # Modules whose content this analysis's answers read, and the importers it searched for a
        # name: what a linted file's cached findings depend on.
        self.consulted: set[str] = set()
        self.read_whole: set[str] = set()  # those of them whose raw text it read, not only parts
        self.searches: dict[tuple[str, str], tuple[str, ...]] = {}  # (module, name) -> its importers that mention it
        self.resolutions: dict[str, str | None] = {}  # dotted names another file could make resolve otherwise

    # -- index ---------------------------------------------------------------------------------
    def _index(self, block, cls: ClassInfo | None, parent: FunctionInfo | None, unit: str) -> None:
        top_level = block is self.module
        for stmt in iter_statements(block):
            if type(stmt) is cst.FunctionDef:
                info = FunctionInfo(stmt, self, cls, parent, stmt.name.value if top_level else unit)
                self.all_functions.append(info)
                self.function_of_node[stmt] = info
                if cls is not None and parent is None:
                    cls.own_methods[info.name] = info
                elif cls is None and parent is None:
                    self.functions[info.name] = info
                self._index(stmt.body, None, info, info.unit)
            elif type(stmt) is cst.ClassDef:
                info = ClassInfo(stmt, self, stmt.name.value if top_level else unit)
                self.class_of_node[stmt] = info
                if cls is None and parent is None:
                    self.classes[info.name] = info
                self._index(stmt.body, info, None, info.unit)
            else:
                for inner in child_blocks(stmt):
                    self._index(inner, cls, parent, unit)

    # -- pieces --------------------------------------------------------------------------------
    def read(self, unit: str, function: FunctionInfo | None = None) -> None:
        """A question read `unit` (the asking file's findings depend on it), or a function of it;
        parsed now if it was not."""
        self.units_read.add(unit)
        if unit in self._pieces:
            self._parse_piece(unit)
        if function is not None and function in self._method_pieces:
            self._parse_method(function)

    def complete(self) -> bool:
        """Parse the pieces not read yet and put them in place: the whole module, which its own lint
        and a full evaluation need. False if a piece could not be parsed (its stub stands for it)."""
        if self._whole:
            return True
        for name in list(self._pieces):
            self._parse_piece(name)
        for function in list(self._method_pieces):
            self._parse_method(function)
        if self._unparsable:
            return False
        self._whole = True
        statements = {}
        for name, methods in self._cut_methods.items():
            info = self._stubbed[name]
            if methods:
                info.definition = whole_class(info.definition, {m: info.own_methods[m].definition for m in methods})
                self.class_of_node[info.definition] = info
            statements[name] = info.definition
        self.module, self._module_lines = whole(self.module, statements), ((1, 0),)
        self._trees, self._cut_methods, self._class_code, self._stubbed = [], {}, {}, {}
        self.all_functions = list(self._functions_in(self.module))
        self._enclosing = None
        return True

    def trees(self) -> list[tuple[cst.Module, LineMap]]:
        """The parsed trees holding this module's nodes, each with where its lines are in the file."""
        return [(self.module, self._module_lines), *self._trees]

    def class_code(self, cls: ClassInfo) -> str:
        """The text of a class of this module, its methods' included."""
        if cls in self._class_code:
            self.units_read.add(cls.unit)
            return self._class_code[cls]
        return self.module.code_for_node(cls.node)

    def _parse_piece(self, name: str) -> None:
        piece = self._pieces.pop(name)
        try:
            tree, statement = parse_piece(piece)
        except PARSE_ERRORS:  # Python's parser took the file, libcst does not: the stub stays
            self._unparsable = True
            return
        self._trees.append((tree, piece.lines))
        self._cut_methods[name] = list(piece.methods)
        if type(statement) is cst.ClassDef:
            cls = self._stubbed[name]
            self.class_of_node[statement] = cls
            cls.definition = statement
            self._index(statement.body, cls, None, name)
            self._method_pieces.update({cls.own_methods[method]: part for method, part in piece.methods.items()})
        else:
            function = self._stubbed[name]
            self.function_of_node[statement] = function
            function.definition = statement
            self._index(statement.body, None, function, name)

    def _parse_method(self, function: FunctionInfo) -> None:
        piece = self._method_pieces.pop(function)
        try:
            tree, method = parse_method(piece)
        except PARSE_ERRORS:
            self._unparsable = True
            return
        self._trees.append((tree, piece.lines))
        self.function_of_node[method] = function
        function.definition = method
        self._index(method.body, None, function, function.unit)

    def _functions_in(self, block):
        """The functions of a block in the order `_index` meets them."""
        for stmt in iter_statements(block):
            if type(stmt) is cst.FunctionDef:
                yield self.function_of_node[stmt]
            if type(stmt) in (cst.FunctionDef, cst.ClassDef):
                yield from self._functions_in(stmt.body)
            else:
                for inner in child_blocks(stmt):
                    yield from self._functions_in(inner)

    def resolve_class(self, expr: cst.CSTNode) -> ClassInfo | None:
        if isinstance(expr, cst.Name) and expr.value in self.classes:
            return self.classes[expr.value]
        qualname = self.imports.qualname(expr)
        return self.project.find_class(qualname, self) if qualname else None

    def resolve_function(self, expr: cst.CSTNode) -> FunctionInfo | None:
        if isinstance(expr, cst.Name) and expr.value in self.functions:
            return self.functions[expr.value]
        qualname = self.imports.qualname(expr)
        return self.project.find_function(qualname, self) if qualname else None

    # -- evaluation ----------------------------------------------------------------------------
    def ensure_module_env(self) -> None:
        """Evaluate the module body, once: what its functions see of module-level names."""
        if self._module_env_state == "running":
            self.project.memo.recursion_cut()  # a call made by the module body itself sees it unfinished
        if self._module_env_state is not None:
            return
        self._module_env_state = "running"
        with self.project.memo.isolated():
            frame = Frame(self, None, record=True)
            frame.run()
        self.module_env = frame.env
        self._module_env_state = "done"

    def ensure_evaluated(self) -> None:
        if self._evaluated:
            return
        self._evaluated = True
        self.complete()
        with self.project.memo.isolated():
            self.ensure_module_env()
            for info in self._callers_first():
                self.evaluate_standalone(info)
            # A function whose callers could not be told by name (a forward, run by calling its module) was
            # evaluated before them: once more, with what they pass.
            for info in self.all_functions:
                if self.bound_params(info) != self._bound_used.get(info):
                    self._summaries.pop(("standalone", info))
                    for sites in (*self.call_sites.values(), *self.module_calls.values()):
                        sites[:] = [site for site in sites if site[1] is not info]
                    self.evaluate_standalone(info)

    def _callers_first(self) -> list[FunctionInfo]:
        """All functions, each after the functions that (by name) call it, so that a function's call
        sites are known when it is evaluated: what its callers pass binds its parameters."""
        by_name: dict[str, list[FunctionInfo]] = {}
        for info in self.all_functions:
            by_name.setdefault(info.name, []).append(info)
        callers: dict[FunctionInfo, list[FunctionInfo]] = {}
        for info in self.all_functions:
            for name in called_names(info.node.body):
                for callee in by_name.get(name, ()):
                    if callee is not info:
                        callers.setdefault(callee, []).append(info)
        order: list[FunctionInfo] = []
        seen: set[FunctionInfo] = set()
        for root in self.all_functions:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter(callers.get(root, ())))]
            while stack:  # depth-first, iteratively: a function is placed after all its callers
                info, pending = stack[-1]
                caller = next(pending, None)
                if caller is None:
                    stack.pop()
                    order.append(info)
                elif caller not in seen:
                    seen.add(caller)
                    stack.append((caller, iter(callers.get(caller, ()))))
        return order

    def evaluate_standalone(self, info: FunctionInfo) -> None:
        key = ("standalone", info)
        if key in self._summaries or key in self._in_progress:
            return
        self._in_progress.add(key)
        frame = Frame(self, info, record=True)
        if info.parent is not None:  # a nested function sees what its enclosing function holds
            self.evaluate_standalone(info.parent)
            enclosing = self._summaries.get(("standalone", info.parent))
            if enclosing is not None:
                frame.env.update({k: v for k, v in enclosing.env.items() if k not in info.param_names()})
        bound = self.bound_params(info)
        self._bound_used[info] = dict(bound)
        if info.cls is not None and info.node.params.params:
            receiver = info.node.params.params[0].name.value
            frame.env[receiver] = bound.pop(receiver, None) or Value(
                kind="model" if info.cls.is_module() else "instance", qualname=info.cls.key, info=info.cls
            )
        for name, value in bound.items():
            frame.env.setdefault(name, value)
        frame.run()
        self._in_progress.discard(key)
        self._summaries[key] = frame

    def dispose(self) -> None:
        """The project dropped this analysis: break the reference cycles between it, its classes and
        their methods, so that reference counting frees its tree at once, without a collection of
        the whole heap (see `collector`). Any later use of it fails loudly."""
        for info in self.class_of_node.values():
            vars(info).clear()
        vars(self).clear()

    def forget_calls(self) -> None:
        """Drop the answers to calls made with other modules' values: the project is dropping some
        of those modules, and a rebuilt one is new objects that these answers would never match."""
        self._summaries = {key: frame for key, frame in self._summaries.items() if key[0] == "standalone"}

    def qualname(self, node: cst.CSTNode) -> str | None:
        return self.imports.qualname(node)

    def value(self, node: cst.CSTNode) -> Value:
        self.ensure_evaluated()
        value = self.values.get(node, UNKNOWN)
        if type(value) is DeferredCall:
            value = self.values[node] = value.result()
        return value
