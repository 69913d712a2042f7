"""Lint files: parse each once, run every selected rule in one traversal, resolve positions only
for files with findings, apply suppressions. One bad file never stops the others."""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import tokenize
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from torchcheck import collector, registry
from torchcheck.analysis.project import Outline, Project, module_name
from torchcheck.config import Config, is_excluded
from torchcheck.context import FileContext, Tracker
from torchcheck.notebook import SUFFIX as NOTEBOOK_SUFFIX
from torchcheck.notebook import is_notebook, lint_notebook
from torchcheck.rule import Rule
from torchcheck.types import Edit, Finding, Fix, RelatedLocation
from torchcheck.walk import walk

SERIAL_THRESHOLD = 24  # below this many files, process start-up costs more than it saves
_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[\w\-]+(?:[\s,]+[\w\-]+)*))?", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*torchcheck:\s*ignore(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)


@dataclass
class FileResult:
    path: str
    findings: list[Finding] = field(default_factory=list)
    source: str | None = None
    error: bool = False  # the file could not be read or parsed, or a rule crashed
    # The modules whose content the findings read, and those whose importers they read (cache keys)
    dependencies: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


@dataclass
class LintResult:
    files: list[FileResult]

    @property
    def findings(self) -> list[Finding]:
        return sorted((f for r in self.files for f in r.findings), key=lambda f: f.sort_key)

    @property
    def has_errors(self) -> bool:
        return any(r.error for r in self.files)


# -- discovery -----------------------------------------------------------------------------------
LINTED_SUFFIXES = (".py", ".pyi", NOTEBOOK_SUFFIX)


def discover(paths: list[Path], config: Config) -> tuple[list[Path], list[FileResult]]:
    """Python files and notebooks under `paths` (explicit files always, directories recursively,
    minus excludes), plus an error result for each path that does not exist and each file named
    that torchcheck does not read."""
    found: list[Path] = []
    missing: list[FileResult] = []
    seen: set = set()
    for path in paths:
        if not path.exists():
            missing.append(_error_result(str(path), "io-error", f"No such file or directory: {path}"))
            continue
        if path.is_file():
            if not _is_linted_file(path):
                missing.append(_error_result(display_path(path), "io-error",
                                             f"Not linted: `{path.name}` is not a Python file (.py, .pyi, or a script"
                                             " with a python #! line) or a Jupyter notebook (.ipynb)"))
            elif path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(path)
            continue
        for directory, dirnames, filenames in os.walk(path, followlinks=False):
            rel = Path(directory).relative_to(path)
            dirnames[:] = sorted(d for d in dirnames if not is_excluded(rel / d, config))
            for filename in sorted(filenames):
                file = Path(directory) / filename
                if filename.lower().endswith(LINTED_SUFFIXES) and not is_excluded(rel / filename, config):
                    if file.resolve() not in seen:
                        seen.add(file.resolve())
                        found.append(file)
    return found, missing


def _is_linted_file(path: Path) -> bool:
    """A file named on the command line is linted if it is Python or a notebook by its suffix, or a
    suffix-less script whose #! line runs python."""
    if path.suffix.lower() in LINTED_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as handle:
            first = handle.readline(200)
    except OSError:
        return True  # let reading it report why it cannot be read
    return first.startswith(b"#!") and b"python" in first


def display_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def project_modules(files: list[Path], paths: list[Path]) -> dict[str, Path]:
    """The Python modules of the linted tree by dotted name (notebooks are not importable)."""
    roots = [p if p.is_dir() else p.parent for p in paths if p.exists()]
    modules: dict[str, Path] = {}
    for file in files:
        if is_notebook(file):
            continue
        root = next((r for r in roots if _is_under(file, r)), file.parent)
        modules[module_name(file, root)] = file
    return modules


def _is_under(file: Path, root: Path) -> bool:
    try:
        file.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


# -- one file ------------------------------------------------------------------------------------
def decode(data: bytes) -> str:
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def _mentions(text: str, needle) -> bool:
    return needle in text if isinstance(needle, str) else needle.search(text) is not None


def _error_result(path: str, name: str, message: str, line: int = 1, column: int = 1) -> FileResult:
    rule = registry.resolve_rule(name)
    finding = Finding(rule.code, rule.name, message, path, line, column, line, column, rule.severity)
    return FileResult(path, [finding], error=True)


def lint_source(source_bytes: bytes, path: Path, config: Config, rules: list[type[Rule]], project: Project,
                name: str | None = None, shown: str | None = None) -> FileResult:
    shown = shown or display_path(path)
    try:
        text = decode(source_bytes)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return _error_result(shown, "io-error", f"Cannot decode file: {exc}")
    active = [r for r in rules if not r.needles or any(_mentions(text, n) for n in r.needles)]
    if not active:
        # No rule can fire here: CPython's own parser (far cheaper than libcst) still checks syntax.
        try:
            ast.parse(source_bytes, filename=shown)
        except SyntaxError as exc:
            return _error_result(shown, "syntax-error", f"Cannot parse file: {exc.msg}", exc.lineno or 1, exc.offset or 1)
        except (ValueError, RecursionError, MemoryError) as exc:
            return _error_result(shown, "syntax-error", f"Cannot parse file: {type(exc).__name__}: {exc}")
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
        return _error_result(shown, "syntax-error", f"Cannot parse file: {exc.message}", exc.raw_line,
                             exc.raw_column + 1)
    except (RecursionError, ValueError, MemoryError) as exc:
        return _error_result(shown, "syntax-error", f"Cannot parse file: {type(exc).__name__}: {exc}")
    ctx = FileContext(path, shown, text, module, name, project, config, held)
    result = FileResult(shown, source=text)
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
        modules, importer_sets = project.dependencies(ctx.analysis)
        result.dependencies = (frozenset(modules - {name}), frozenset(importer_sets))
    reports = [r for r in ctx.reports if type(r.rule) not in failed]
    if reports:
        result.findings.extend(_findings(ctx, reports, text))
    return result


@lru_cache(maxsize=None)
def _hook_names(rule_class: type) -> tuple[str, ...]:
    return tuple(name for name in dir(rule_class) if name.startswith(("visit_", "leave_")) and callable(getattr(rule_class, name)))


class _Dispatcher:
    """Calls every rule's visit_/leave_ methods in one traversal; a crashing rule is switched off
    for this file and reported, and the others go on."""

    def __init__(self, ctx: FileContext, visitors: list[Rule], failed: dict) -> None:
        self.tracker = Tracker(ctx)
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
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        self.failed[type(method.__self__)] = f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})"
        self._tables()

    def run(self, module: cst.Module) -> None:
        walk(module, self.on_visit, self.on_leave)

    def on_visit(self, node: cst.CSTNode) -> None:
        self.tracker.on_visit(node)
        for method in self.visit_table.get(type(node).__name__, ()):
            try:
                method(node)
            except Exception as exc:  # noqa: BLE001 - reported as the rule's internal error
                self._fail(method, exc)

    def on_leave(self, node: cst.CSTNode) -> None:
        for method in self.leave_table.get(type(node).__name__, ()):
            try:
                method(node)
            except Exception as exc:  # noqa: BLE001 - reported as the rule's internal error
                self._fail(method, exc)
        self.tracker.on_leave(node)


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _findings(ctx: FileContext, reports, text: str) -> list[Finding]:
    positions = MetadataWrapper(ctx.module, unsafe_skip_copy=True).resolve(PositionProvider)
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


# -- many files ----------------------------------------------------------------------------------
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
        return _error_result(shown, "io-error", "File disappeared while linting")
    except IsADirectoryError:
        return _error_result(shown, "io-error", "Is a directory")
    except OSError as exc:
        return _error_result(shown, "io-error", f"Cannot read file: {exc.strerror or exc}")
    try:
        return lint_document(data, path, config, rules, project, name, shown)
    except Exception as exc:  # last resort: never lose the other files
        return _error_result(shown, "internal-error", f"torchcheck crashed on this file: {type(exc).__name__}: {exc}")


def too_large(shown: str, size: int, config: Config) -> FileResult:
    rule = registry.resolve_rule("file-too-large")
    return FileResult(shown, [Finding(rule.code, rule.name, f"Skipped: {size / 1e6:.1f} MB is over max-file-size"
                                      f" ({config.max_file_size:g} MB)", shown, 1, 1, 1, 1, rule.severity)])


_WORKER: dict = {}


def _init_worker(config: Config, rule_codes: list[str], modules: dict[str, Path]) -> None:
    collector.start_worker()
    _WORKER["config"] = config
    _WORKER["rules"] = [registry.resolve_rule(c) for c in rule_codes]
    _WORKER["project"] = Project(modules)
    _WORKER["names"] = {path: name for name, path in modules.items()}


def _lint_in_worker(path: Path) -> FileResult:
    return lint_file(path, _WORKER["config"], _WORKER["rules"], _WORKER["project"], _WORKER["names"].get(path))


def lint_paths(paths: list[Path], config: Config, jobs: int | None = None, cache_root: Path | None = None,
               progress: bool = False) -> LintResult:
    """Lint files and folders. With `cache_root`, unchanged files (whose dependencies are unchanged) are
    answered from `.torchcheck_cache/` there."""
    rules = registry.selected_rules(config)
    files, missing = discover(paths, config)
    modules = project_modules(files, paths)
    names = {path: name for name, path in modules.items()}
    project = Project(modules)
    results: dict[Path, FileResult] = {}
    keys: dict[Path, str] = {}
    cache = None
    if cache_root is not None and files:
        from torchcheck.cache import Cache, content_hashes, entry_key

        cache = Cache(cache_root)
        fingerprint = config.fingerprint() + repr(sorted(r.code for r in rules))
        hashes = content_hashes(files)
        module_hashes = {name: hashes[path] for name, path in modules.items()}
        outline_keys = {name: f"{name}:{digest}" for name, digest in module_hashes.items()}
        stored = cache.outlines()
        project = Project(modules, {name: Outline(frozenset(stored[key][0]), frozenset(stored[key][1]))
                                    for name, key in outline_keys.items() if key in stored})
        keys = {file: entry_key(file, hashes[file], fingerprint) for file in files}
        for file in files:
            entry = cache.get(keys[file])
            if entry is not None and entry.is_current(module_hashes, project):
                results[file] = FileResult(display_path(file), entry.findings,
                                           error=any(f.code in ERROR_CODES for f in entry.findings))
    todo = [f for f in files if f not in results]
    jobs = jobs or os.cpu_count() or 1
    with _progress(progress and len(todo) > PROGRESS_THRESHOLD, len(todo)) as advance, collector.lint_run():
        if jobs > 1 and len(todo) >= SERIAL_THRESHOLD:
            # 30 ms of imports that a small run does without
            from concurrent.futures import ProcessPoolExecutor

            codes = [r.code for r in rules]
            with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(config, codes, modules)) as pool:
                for file, result in zip(todo, pool.map(_lint_in_worker, todo, chunksize=max(1, len(todo) // (jobs * 8)))):
                    results[file] = result
                    advance()
        else:
            for file in todo:
                results[file] = lint_file(file, config, rules, project, names.get(file))
                advance()
    if cache is not None:
        from torchcheck.cache import Entry

        if not stored.keys() >= set(outline_keys.values()):  # kept for each module's latest content
            current = {key: project.outline(name) for name, key in outline_keys.items()}
            cache.put_outlines({key: value for key, value in stored.items() if key.rpartition(":")[0] not in modules}
                               | {key: (sorted(o.imported), sorted(o.defined)) for key, o in current.items()})
        for file in todo:
            result = results[file]
            if not any(f.code == "TC003" for f in result.findings):  # unreadable now may be readable later
                modules, importer_sets = result.dependencies
                cache.put(keys[file], Entry(result.findings, {m: module_hashes.get(m, "") for m in sorted(modules)},
                                            {m: sorted(project.importers_of_module(m)) for m in sorted(importer_sets)}))
    for file, result in results.items():  # sources for the report's excerpts, read only where needed
        if result.findings and result.source is None:
            try:
                result.source = decode(file.read_bytes())
            except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
                pass
    return LintResult(list(missing) + [results[f] for f in files])


ERROR_CODES = ("TC001", "TC002", "TC003")
PROGRESS_THRESHOLD = 200


@contextlib.contextmanager
def _progress(enabled: bool, total: int):
    """A rich progress bar on stderr for long runs on a terminal; nothing otherwise."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda: None
        return
    with Progress(TextColumn("linting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("lint", total=total)
        yield lambda: bar.advance(task)
