"""Lint a run of files: find them, answer unchanged ones from the cache, lint the others (in
several processes for large runs, see `linter` for one file). A warm run answered wholly from the
cache imports no parser and no rule."""
from __future__ import annotations

import contextlib
import io
import os
import tokenize
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torchcheck.analysis.import_graph import (
    ImportGraph,
    Outline,
    dotted_module,
    relative_text,
    remember_resolved,
    resolved,
    too_large_to_hold,
)
from torchcheck.analysis.units import Dependencies
from torchcheck.config import Config, is_excluded_entry
from torchcheck.notebook import SUFFIX as NOTEBOOK_SUFFIX
from torchcheck.notebook import is_notebook
from torchcheck.types import Finding

SERIAL_THRESHOLD = 24  # below this many files, process start-up costs more than it saves
# Files per task of a parallel run: eight tasks per process, for balance, but no fewer files than this
# where there are enough for every process: neighbouring files share their neighbours, which a
# process parses whole only for the files it lints.
MIN_CHUNK = 40

@dataclass
class FileResult:
    """One linted file: its findings, its text, and what of other files they read."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    source: str | None = None
    error: bool = False  # the file could not be read or parsed, or a rule crashed
    dependencies: Dependencies = field(default_factory=Dependencies)  # what the findings read of other files
    transient: bool = False  # a failure the next run may not meet (a process out of memory): not cached


@dataclass
class LintResult:
    """The linted files of a run."""

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
            missing.append(error_result(str(path), "io-error", f"No such file or directory: {path}"))
            continue
        if path.is_file():
            if not _is_linted_file(path):
                missing.append(error_result(display_path(path), "io-error",
                                             f"Not linted: `{path.name}` is not a Python file (.py, .pyi, or a script"
                                             " with a python #! line) or a Jupyter notebook (.ipynb)"))
            elif resolved(path) not in seen:
                seen.add(resolved(path))
                found.append(path)
            continue
        for file in _tree_files(str(path), str(resolved(path)), "", config):
            if resolved(file) not in seen:
                seen.add(resolved(file))
                found.append(file)
    return found, missing


def _tree_files(directory: str, real: str, rel: str, config: Config) -> Iterator[Path]:
    """The linted files under `directory` (whose resolved path is `real`, and path below the linted
    folder `rel`), in `os.walk` order: a folder's files by name, then its subfolders by name; linked
    folders are not entered. Paths are strings until a file is found: trees have thousands of files."""
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        try:
            is_folder = entry.is_dir()
            is_link = entry.is_symlink()
        except OSError:
            continue
        name = entry.name
        below = f"{rel}/{name}" if rel else name
        if is_folder:
            if not is_link and not is_excluded_entry(name, below, config):
                subfolders.append(name)
        elif name.lower().endswith(LINTED_SUFFIXES) and not is_excluded_entry(name, below, config):
            file = Path(entry.path)
            if not is_link:
                remember_resolved(file, Path(os.path.join(real, name)))
            yield file
    for name in subfolders:
        yield from _tree_files(os.path.join(directory, name), os.path.join(real, name), f"{rel}/{name}" if rel else name,
                               config)


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
    cwd = os.getcwd()
    if cwd not in _CWD:
        _CWD[cwd] = Path(cwd)
    return relative_text(path, _CWD[cwd]) or path.as_posix()


_CWD: dict[str, Path] = {}


def project_modules(files: list[Path], paths: list[Path]) -> dict[str, Path]:
    """The Python modules of the linted tree by dotted name (notebooks are not importable)."""
    roots = [package_root(p if p.is_dir() else p.parent) for p in paths if p.exists()]
    modules: dict[str, Path] = {}
    for file in files:
        if is_notebook(file):
            continue
        relative = next((text for text in (relative_text(file, r) for r in roots) if text is not None), file.name)
        modules[dotted_module(relative)] = file
    return modules


def package_root(folder: Path) -> Path:
    """Where module names start for a linted folder: above the outermost package holding it, so that
    `lint src/pkg` names `pkg.utils` as `from pkg.utils import x` in the tree does. Not above torch or
    torchvision: names under `torch.` are the catalog's (`torch.nn.Linear`), even in torch's own tree."""
    folder = resolved(folder)
    while (folder / "__init__.py").is_file() and folder.parent != folder and folder.name not in ("torch", "torchvision"):
        folder = folder.parent
    return folder


def decode(data: bytes) -> str:
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def error_result(path: str, name: str, message: str, line: int = 1, column: int = 1) -> FileResult:
    from torchcheck import registry

    rule = registry.resolve_rule(name)
    finding = Finding(rule.code, rule.name, message, path, line, column, line, column, rule.severity)
    return FileResult(path, [finding], error=True)


_WORKER: dict = {}


def _init_worker(config: Config, rule_codes: list[str], modules: dict[str, Path], outlines: dict[str, Outline],
                 cache_root: Path | None) -> None:
    from torchcheck import collector, registry
    from torchcheck.analysis.project import Project

    collector.start_worker()
    _WORKER["config"] = config
    _WORKER["rules"] = [registry.resolve_rule(c) for c in rule_codes]
    _WORKER["project"] = Project(modules, outlines, _cache(cache_root))
    _WORKER["names"] = {path: name for name, path in modules.items()}


def _cache(root: Path | None):
    if root is None:
        return None
    from torchcheck.cache import Cache

    return Cache(root)


def _lint_chunk_in_worker(paths: list[Path]) -> list[FileResult]:
    """Lint a run of neighbouring files (a model's folder lies together). Only these are known to be
    linted by this process: a module of the tree another process lints is parsed here as far as
    questions read it, not whole."""
    names = _WORKER["names"]
    _WORKER["project"].expect({names[p] for p in paths if p in names})
    return [_lint_in_worker(path) for path in paths]


def _lint_in_worker(path: Path) -> FileResult:
    from torchcheck.linter import lint_file

    return lint_file(path, _WORKER["config"], _WORKER["rules"], _WORKER["project"], _WORKER["names"].get(path))


def lint_paths(paths: list[Path], config: Config, jobs: int | None = None, cache_root: Path | None = None,
               progress: bool = False) -> LintResult:
    """Lint files and folders. With `cache_root`, unchanged files (whose dependencies are unchanged) are
    answered from `.torchcheck_cache/` there."""
    files, missing = discover(paths, config)
    modules = project_modules(files, paths)
    graph = ImportGraph(modules)
    results: dict[Path, FileResult] = {}
    keys: dict[Path, str] = {}
    kept_sources: set[str] = set()  # modules some entries read parts of: their text is kept for the next run
    cache = last_run = None
    if cache_root is not None and files:
        from torchcheck.cache import Cache, LastRun, entry_key, run_context, tree_key

        cache = Cache(cache_root)
        hashes = cache.content_hashes(files)
        module_hashes = {name: hashes[path] for name, path in modules.items()}
        last_run = LastRun(cache, run_context(files, modules, config.fingerprint()))
        last_hashes = last_run.hashes(modules)
        changed = {name for name, digest in module_hashes.items() if last_hashes[name] != digest}
        may_find_otherwise = _never
        if changed:
            graph, stored = _cached_graph(cache, modules, module_hashes)
            may_find_otherwise = _searches_changed(changed, graph, stored, last_hashes, cache)
        for file, findings in last_run.still_holding(files, hashes, changed, may_find_otherwise).items():
            results[file] = FileResult(display_path(file), findings, error=_has_errors(findings))
    if cache is not None and len(results) < len(files):
        if not changed:
            graph, _ = _cached_graph(cache, modules, module_hashes)
        keys = {file: entry_key(file, hashes[file], config.fingerprint()) for file in files if file not in results}
        tree = tree_key(modules)
        for file in keys:
            entry = cache.get(keys[file])
            if entry is None:
                continue
            outdated = entry.outdated(module_hashes)
            if cache.is_current(entry, outdated, module_hashes, modules, graph, tree):
                results[file] = FileResult(display_path(file), entry.findings, error=_has_errors(entry.findings))
                last_run.record(file, hashes[file], entry.findings, entry.dependencies, entry.searches)
                if outdated or entry.tree != tree:  # changes its findings did not read: it now names them
                    entry.renew(module_hashes)
                    entry.tree = tree
                    cache.put(keys[file], entry, module_hashes)
                    kept_sources.update(outdated)
    todo = [f for f in files if f not in results]
    if todo:
        results.update(_lint(todo, config, modules, graph, jobs or os.cpu_count() or 1, progress, cache_root))
    if cache is not None:
        from torchcheck.cache import Entry

        for file in todo:
            result = results[file]
            if _cacheable(result):
                read = result.dependencies
                in_parts = [m for m, parts in read.modules.items() if parts is not None]
                searches = {f"{m} {name}": list(found) for (m, name), found in sorted(read.searches.items())}
                for search, found in searches.items():
                    cache.record_search(search, found, graph, module_hashes)
                cache.put(keys[file], Entry(
                    result.findings,
                    {m: Entry.dependency(module_hashes.get(m, ""), read.modules[m]) for m in sorted(read.modules)},
                    searches,
                    _cited_lines(result, in_parts, modules),
                    {name: read.resolutions[name] or "" for name in sorted(read.resolutions)}, tree), module_hashes)
                last_run.record(file, hashes[file], result.findings, sorted(read.modules), searches)
                kept_sources.update(in_parts)
        cache.keep_sources({modules[m]: module_hashes[m] for m in sorted(kept_sources) if m in modules})
        cache.save_searches(modules)
        last_run.save()
    return LintResult(list(missing) + [_with_source(f, results[f]) for f in files])


def _cached_graph(cache, modules: dict[str, Path], module_hashes: dict[str, str]) -> tuple[ImportGraph, dict]:
    """The import graph, from the outlines the cache keeps for each module's content (kept up to date
    here), and those outlines by "<module>:<content hash>"."""
    outline_keys = {name: f"{name}:{digest}" for name, digest in module_hashes.items()}
    stored = cache.outlines()
    graph = ImportGraph(modules, {name: Outline(frozenset(stored[key][0]), frozenset(stored[key][1]))
                                  for name, key in outline_keys.items() if key in stored})
    if not stored.keys() >= set(outline_keys.values()):  # kept for each module's latest content
        current = {key: graph.outline(name) for name, key in outline_keys.items()}
        cache.put_outlines({key: value for key, value in stored.items() if key.rpartition(":")[0] not in modules}
                           | {key: (sorted(o.imported), sorted(o.defined)) for key, o in current.items()})
    return graph, stored


def _searches_changed(changed: set[str], graph: ImportGraph, stored: dict, last_hashes: dict[str, str],
                      cache) -> Callable[[str], bool]:
    """Whether a search of importers ("<module> <name>") may find otherwise than in the last run: a
    changed module imports the module, and mentions the name or was found mentioning it. If a changed
    module may import otherwise than it did (its outline then is not kept), any search may."""
    changed_importers: dict[str, list[str]] = {}
    for name in changed:
        before = stored.get(f"{name}:{last_hashes[name]}")
        if before is None or set(before[0]) != graph.outline(name).imported:
            return _always
        for module in graph.imports_of(name):
            changed_importers.setdefault(module, []).append(name)
    texts: dict[str, bytes] = {}

    def may_find_otherwise(search: str) -> bool:
        module, _, wanted = search.partition(" ")
        importers = changed_importers.get(module)
        if not importers:
            return False
        found = cache.recorded_search(search)
        if found is None:
            return True
        for importer in importers:
            if importer not in texts:
                try:
                    texts[importer] = graph.files[importer].read_bytes()
                except OSError:
                    return True
            if importer in found or wanted.encode() in texts[importer]:
                return True
        return False

    return may_find_otherwise


def _never(search: str) -> bool:
    return False


def _always(search: str) -> bool:
    return True


def _cacheable(result: FileResult) -> bool:
    return not result.transient and not any(f.code == "TC003" for f in result.findings)  # TC003: may be readable later


def _has_errors(findings: list[Finding]) -> bool:
    return any(f.code in ERROR_CODES for f in findings)


def _with_source(file: Path, result: FileResult) -> FileResult:
    """The file's source, for the report's excerpts of its findings (read only where there are some)."""
    if result.findings and result.source is None:
        try:
            result.source = decode(file.read_bytes())
        except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
            pass
    return result


def _cited_lines(result: FileResult, modules_read: Iterable[str], modules: dict[str, Path]) -> dict[str, list[int]]:
    """The lines of the modules read in parts that the findings show as evidence: their place is
    part of what the findings read."""
    wanted = set(modules_read)
    if not wanted or not any(r.path != result.path for f in result.findings for r in f.related):
        return {}
    by_path = {display_path(modules[m]): m for m in wanted if m in modules}
    cited: dict[str, set[int]] = {}
    for finding in result.findings:
        for related in finding.related:
            if related.path in by_path:
                cited.setdefault(by_path[related.path], set()).add(related.line)  # its part holds it whole
    return {m: sorted(lines) for m, lines in sorted(cited.items())}


def _lint(todo: list[Path], config: Config, modules: dict[str, Path], graph: ImportGraph, jobs: int,
          progress: bool, cache_root: Path | None) -> dict[Path, FileResult]:
    """Lint the files the cache could not answer, in this process or, for many files, in `jobs`; each
    very large one in a process of its own."""
    from torchcheck import collector, registry
    from torchcheck.analysis.project import Project
    from torchcheck.linter import lint_file

    rules = registry.selected_rules(config)
    outlines = graph.known_outlines()
    codes = [r.code for r in rules]
    large = [f for f in todo if not is_notebook(f) and too_large_to_hold(f, config.max_file_size * 1_000_000)]
    todo = [f for f in todo if f not in large]
    names = {path: name for name, path in modules.items()}
    results = {}
    with _progress(progress and len(todo) + len(large) > PROGRESS_THRESHOLD, len(todo) + len(large)) as advance, \
            collector.lint_run():
        for file in large:
            results[file] = _lint_alone(file, config, codes, modules, outlines, cache_root)
            advance()
        if jobs > 1 and len(todo) >= SERIAL_THRESHOLD:
            # imported here: 20 ms that a one-file lint does without
            from concurrent.futures import ProcessPoolExecutor

            size = max(min(MIN_CHUNK, -(-len(todo) // jobs)), len(todo) // (jobs * 8))  # a task for each process at least
            chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
            with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(config, codes, modules, outlines, cache_root)) as pool:
                for chunk, chunk_results in zip(chunks, pool.map(_lint_chunk_in_worker, chunks)):
                    results.update(zip(chunk, chunk_results))
                    advance(len(chunk))
        else:
            project = Project(modules, outlines, _cache(cache_root))
            project.expect(frozenset(names[f] for f in todo if f in names))
            for file in todo:
                results[file] = lint_file(file, config, rules, project, names.get(file))
                advance()
    return results


def _lint_alone(file: Path, config: Config, codes: list[str], modules: dict[str, Path],
                outlines: dict[str, Outline], cache_root: Path | None) -> FileResult:
    """One very large file in a process that exits after it; if that process dies (out of memory),
    the file gets an error and the run goes on."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, initializer=_init_worker,
                                 initargs=(config, codes, modules, outlines, cache_root)) as alone:
            return alone.submit(_lint_chunk_in_worker, [file]).result()[0]
    except BrokenProcessPool:
        result = error_result(display_path(file), "internal-error",
                              "The process linting this very large file died (out of memory?); the file was not linted")
        result.transient = True
        return result


ERROR_CODES = ("TC001", "TC002", "TC003")
PROGRESS_THRESHOLD = 200


@contextlib.contextmanager
def _progress(enabled: bool, total: int):
    """A rich progress bar on stderr for long runs on a terminal; nothing otherwise."""
    if not enabled:
        yield lambda files=1: None
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
        yield lambda files=1: None
        return
    with Progress(TextColumn("linting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("lint", total=total)
        yield lambda files=1: bar.advance(task, files)
