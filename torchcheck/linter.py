"""Lint one file: parse it once, run every selected rule in one traversal, resolve positions only
if there are findings, apply suppressions. A crashing rule is reported and the others go on."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import libcst as cst

from torchcheck import collector, registry
from torchcheck.analysis.import_graph import module_name
from torchcheck.analysis.project import Project
from torchcheck.config import Config
from torchcheck.context import FileContext
from torchcheck.engine import FileResult, decode, display_path, error_result
from torchcheck.notebook import is_notebook, lint_notebook
from torchcheck.positions import Positions
from torchcheck.rule import Rule
from torchcheck.types import Edit, Finding, Fix, RelatedLocation
from torchcheck.walk import STATEMENT_TYPES, children

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[\w\-]+(?:[\s,]+[\w\-]+)*))?", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*torchcheck:\s*ignore(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)



def _mentions(text: str, needle) -> bool:
    return needle in text if isinstance(needle, str) else needle.search(text) is not None


def lint_source(source_bytes: bytes, path: Path, config: Config, rules: list[type[Rule]], project: Project,
                name: str | None = None, shown: str | None = None) -> FileResult:
    shown = shown or display_path(path)
    try:
        text = decode(source_bytes)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return error_result(shown, "io-error", f"Cannot decode file: {exc}")
    mentioned: dict = {}  # rules share needles (both evaluation rules look for evaluation words)
    active = [r for r in rules if not r.needles or any(
        mentioned[n] if n in mentioned else mentioned.setdefault(n, _mentions(text, n)) for n in r.needles)]
    if not active:
        # No rule can fire here: CPython's own parser (far cheaper than libcst) still checks syntax.
        try:
            ast.parse(source_bytes, filename=shown)
        except SyntaxError as exc:
            return error_result(shown, "syntax-error", f"Cannot parse file: {exc.msg}", exc.lineno or 1, exc.offset or 1)
        except (ValueError, RecursionError, MemoryError) as exc:
            return error_result(shown, "syntax-error", f"Cannot parse file: {type(exc).__name__}: {exc}")
        return FileResult(shown)
    name = name or module_name(path, path.parent)
    held = project.begin(name, source_bytes)
    try:
        result = _lint_tree(source_bytes, text, path, shown, name, config, active, project, held)
    finally:
        project.end()
    if not result.findings:
        result.source = None  # kept only for the report's excerpts and for fixes
    return result


def _lint_tree(source_bytes: bytes, text: str, path: Path, shown: str, name: str, config: Config,
               active: list[type[Rule]], project: Project, held) -> FileResult:
    try:
        module = held.module if held is not None else collector.parse_module(source_bytes)
    except cst.ParserSyntaxError as exc:
        return error_result(shown, "syntax-error", f"Cannot parse file: {exc.message}", exc.raw_line,
                             exc.raw_column + 1)
    except (RecursionError, ValueError, MemoryError) as exc:
        return error_result(shown, "syntax-error", f"Cannot parse file: {type(exc).__name__}: {exc}")
    ctx = FileContext(path, shown, text, module, name, project, config, held)
    result = FileResult(shown, source=text)
    if ctx.imports.other_framework():  # every rule is about PyTorch code
        return result
    failed: dict[type[Rule], str] = {}
    visitors = [rule(ctx) for rule in active]
    try:
        _Dispatcher(ctx, visitors, failed).run(module)
    except RecursionError:
        failed[Rule] = "RecursionError: the file nests too deeply to analyse"
    for rule_class, trace in failed.items():
        result.error = True
        result.findings.append(Finding("TC002", "internal-error",
                                       f"Rule {getattr(rule_class, 'name', 'engine')} crashed on this file: {trace}",
                                       shown, 1, 1, 1, 1, registry.resolve_rule("internal-error").severity))
    if ctx.has_analysis:
        result.dependencies = project.dependencies(ctx.analysis)
        result.dependencies.modules.pop(name, None)
    reports = [r for r in ctx.reports if type(r.rule) not in failed]
    if reports:
        result.findings.extend(_findings(ctx, reports, text))
    return result


@lru_cache(maxsize=None)
def _hook_names(rule_class: type) -> tuple[str, ...]:
    """The visit_/leave_ methods a rule defines; libcst's visitor base defines a no-op for every node
    type, which the dispatcher must not call a million times per file."""
    own = [cls for cls in rule_class.__mro__ if not cls.__module__.startswith("libcst")]
    return tuple(sorted({name for cls in own for name, value in vars(cls).items()
                         if name.startswith(("visit_", "leave_")) and callable(value)}))


class _Dispatcher:
    """Calls every rule's visit_/leave_ methods in one traversal, keeping the enclosing statements,
    functions and classes in the context; a crashing rule is switched off for this file and
    reported, and the others go on."""

    def __init__(self, ctx: FileContext, visitors: list[Rule], failed: dict) -> None:
        self.ctx = ctx
        self.visitors = visitors
        self.failed = failed
        self._tables()

    def _tables(self) -> None:
        """For each node type's name, the hooks of the rules still running."""
        visit: dict[str, list] = defaultdict(list)
        leave: dict[str, list] = defaultdict(list)
        for visitor in self.visitors:
            if type(visitor) in self.failed:
                continue
            for method_name in _hook_names(type(visitor)):
                kind, _, node_type = method_name.partition("_")
                (visit if kind == "visit" else leave)[node_type].append(getattr(visitor, method_name))
        self.visit_table = {name: tuple(hooks) for name, hooks in visit.items()}
        self.leave_table = {name: tuple(hooks) for name, hooks in leave.items()}

    def _fail(self, method, exc: Exception) -> None:
        """A rule bug must not stop the others: its rule stops for this file."""
        import traceback

        frame = traceback.extract_tb(exc.__traceback__)[-1]
        self.failed[type(method.__self__)] = f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})"
        self._tables()

    def run(self, node: cst.CSTNode) -> None:
        """Visit `node` and everything below it, in source order; one call per node, as a tree has
        hundreds of thousands."""
        kind = type(node)
        scopes = None
        if kind in STATEMENT_TYPES:
            self.ctx.statements.append(node)
            scopes = self.ctx.functions if kind is cst.FunctionDef else self.ctx.classes if kind is cst.ClassDef else None
            if scopes is not None:
                scopes.append(node)
        for method in self.visit_table.get(kind.__name__, ()):
            try:
                method(node)
            except Exception as exc:  # noqa: BLE001 - reported as the rule's internal error
                self._fail(method, exc)
        for child in children(node):
            self.run(child)
        for method in self.leave_table.get(kind.__name__, ()):
            try:
                method(node)
            except Exception as exc:  # noqa: BLE001 - reported as the rule's internal error
                self._fail(method, exc)
        if kind in STATEMENT_TYPES:
            self.ctx.statements.pop()
            if scopes is not None:
                scopes.pop()


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _findings(ctx: FileContext, reports, text: str) -> list[Finding]:
    positions = Positions(ctx.module, text)
    lines = text.splitlines()
    offsets = _line_offsets(text)
    ignored = _per_file_ignores(ctx)
    findings = []
    for report in reports:
        rule = report.rule
        if any(sel in (rule.code, rule.name) or rule.code.startswith(sel) for sel in ignored):
            continue
        span = positions[report.node]
        start_line = positions[report.statement].start.line if report.statement in positions else span.start.line
        if _suppressed(lines, {span.start.line, start_line}, rule):
            continue
        fix = None
        if report.fix is not None and rule.fix_safety is not None:
            edits = []
            for replacement in report.fix.replacements:
                where = positions[replacement.node]
                start = offsets[where.start.line - 1] + where.start.column
                end = start if replacement.insert_before else offsets[where.end.line - 1] + where.end.column
                text = replacement.text
                if replacement.insert_before and text.endswith("\n"):
                    text += lines[where.start.line - 1][: where.start.column]  # keep the node's indentation
                edits.append(Edit(start, end, text))
            fix = Fix(report.fix.title, report.fix.safety or rule.fix_safety, tuple(edits))
        here = (ctx.display_path, span.start.line, span.start.column + 1)
        related = []
        for where, note in report.related:
            location = _related_location(ctx, positions, where, note)
            if location is None or (location.path, location.line, location.column) == here or location in related:
                continue  # unknown, at the finding itself, or given twice: adds nothing
            related.append(location)
        findings.append(Finding(rule.code, rule.name, report.message, ctx.display_path, span.start.line,
                                span.start.column + 1, span.end.line, span.end.column + 1, rule.severity, fix,
                                related=tuple(related)))
    return findings


def _related_location(ctx: FileContext, positions, node, message: str) -> RelatedLocation | None:
    """Where a piece of evidence is, in this file or in a module of the project its analysis reached;
    None where that cannot be known."""
    if node in positions:
        path, span = ctx.display_path, positions[node]
    else:
        found = ctx.project.locate(node, ctx.analysis)
        if found is None:
            return None
        path, span = display_path(found[0]), found[1]
    return RelatedLocation(message, path, span.start.line, span.start.column + 1, span.end.line, span.end.column + 1)


def _per_file_ignores(ctx: FileContext) -> set[str]:
    import fnmatch

    ignored: set[str] = set()
    for pattern, codes in ctx.config.per_file_ignores.items():
        if fnmatch.fnmatch(ctx.display_path, pattern) or fnmatch.fnmatch(ctx.path.name, pattern):
            ignored.update(codes)
    return ignored


def _suppressed(lines: list[str], line_numbers: set[int], rule: type[Rule] | Rule) -> bool:
    for number in line_numbers:
        if not 0 < number <= len(lines) or "#" not in lines[number - 1]:
            continue
        line = lines[number - 1]
        for pattern in (_NOQA, _IGNORE):
            match = pattern.search(line)
            if match is None:
                continue
            codes = match.group("codes")
            if not codes:
                return True
            selectors = {c.strip() for c in re.split(r"[\s,]+", codes) if c.strip()}
            if any(rule.code.startswith(s) or s == rule.name for s in selectors):
                return True
    return False


def lint_document(data: bytes, path: Path, config: Config, rules: list[type[Rule]], project: Project,
                  name: str | None = None, shown: str | None = None) -> FileResult:
    """A Python file's or a notebook's findings, from its bytes."""
    shown = shown or display_path(path)
    if is_notebook(path):
        return lint_notebook(data, path, config, rules, project, shown)
    return lint_source(data, path, config, rules, project, name, shown)


def lint_file(path: Path, config: Config, rules: list[type[Rule]], project: Project, name: str | None = None) -> FileResult:
    shown = display_path(path)
    try:
        size = path.stat().st_size
        if size > config.max_file_size * 1_000_000 and not is_notebook(path):  # a notebook's code is measured
            return too_large(shown, size, config)  # without its outputs, once read
        data = path.read_bytes()
    except FileNotFoundError:
        return error_result(shown, "io-error", "File disappeared while linting")
    except IsADirectoryError:
        return error_result(shown, "io-error", "Is a directory")
    except OSError as exc:
        return error_result(shown, "io-error", f"Cannot read file: {exc.strerror or exc}")
    try:
        return lint_document(data, path, config, rules, project, name, shown)
    except Exception as exc:  # last resort: never lose the other files
        return error_result(shown, "internal-error", f"torchcheck crashed on this file: {type(exc).__name__}: {exc}")


def too_large(shown: str, size: int, config: Config) -> FileResult:
    rule = registry.resolve_rule("file-too-large")
    return FileResult(shown, [Finding(rule.code, rule.name, f"Skipped: {size / 1e6:.1f} MB is over max-file-size"
                                      f" ({config.max_file_size:g} MB)", shown, 1, 1, 1, 1, rule.severity)])
