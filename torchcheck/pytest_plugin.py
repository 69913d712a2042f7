"""pytest plugin (entry point `pytest11`): lint as part of the test run, and run training tests
under the runtime harness.

- `pytest --torchcheck`: one lint item per Python file and per notebook; an item with findings fails with the text
  `torchcheck lint` prints. Clean results are cached per file content and config, and kept while the modules its findings
  read are unchanged.
- the `torchcheck_watch` fixture (or `--torchcheck-runtime` for every test): the test body runs
  under `torchcheck.watch()`, and the test fails on findings, with the report.
- `@pytest.mark.torchcheck(select=[...], ignore=[...], mode="collect")` configures the harness.
- a "torchcheck" terminal summary section counts findings per rule (also under xdist).
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from torchcheck import __version__

CACHE_KEY = "torchcheck/clean"
PROPERTY = "torchcheck_findings"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchcheck")
    group.addoption("--torchcheck", action="store_true", help="lint Python files and notebooks with torchcheck")
    group.addoption("--torchcheck-runtime", action="store_true",
                    help="run every test under the torchcheck runtime harness and fail tests with findings")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "torchcheck(select=None, ignore=None, mode='collect'): "
                                       "configure the torchcheck runtime harness for this test")
    if config.getoption("torchcheck"):
        config.stash[_LINT] = _LintSession(config)


_LINT = pytest.StashKey["_LintSession"]()


class _LintSession:
    """What every lint item of a session shares: config, rules, the cross-file project index."""

    def __init__(self, config: pytest.Config) -> None:
        from torchcheck.analysis.project import Project
        from torchcheck.config import load_config
        from torchcheck.engine import discover, project_modules
        from torchcheck.registry import selected_rules

        root = Path(str(config.rootpath))
        self.config = load_config(root)
        self.rules = selected_rules(self.config)
        files, _ = discover([root], self.config)
        self.project = Project(project_modules(files, [root]))
        self.names = {path.resolve(): name for name, path in self.project.files.items()}
        self._config = config
        self._clean: dict | None = None
        self._hashes: dict[str, str] = {}
        self._searches: dict[str, list[str]] = {}
        self.fingerprint = hashlib.sha256(f"{__version__}{self.config.fingerprint()}".encode()).hexdigest()[:16]

    @property
    def cache(self):
        return getattr(self._config, "cache", None)  # absent with -p no:cacheprovider

    @property
    def clean(self) -> dict:
        """File -> content key of files that were clean, from earlier runs (reset by --cache-clear)."""
        if self._clean is None:
            self._clean = self.cache.get(CACHE_KEY, {}) if self.cache is not None else {}
        return self._clean

    def key(self, path: Path, data: bytes) -> str:
        return hashlib.sha256(data + self.fingerprint.encode()).hexdigest()

    def _module_hash(self, module: str) -> str:
        if module not in self._hashes:
            try:
                self._hashes[module] = hashlib.sha256(self.project.files[module].read_bytes()).hexdigest()
            except (OSError, KeyError):
                self._hashes[module] = ""
        return self._hashes[module]

    def _found(self, search: str) -> list[str]:
        """The importers of a module that mention a name ("<module> <name>"), as a search finds them now."""
        if search not in self._searches:
            module, _, name = search.partition(" ")
            self._searches[search] = self.project.importers_mentioning(module, name)
        return self._searches[search]

    def was_clean(self, path: Path, key: str) -> bool:
        """Clean last time, and nothing its findings read (other modules, their importers) changed."""
        entry = self.clean.get(str(path))
        if not isinstance(entry, dict) or entry.get("key") != key or "searches" not in entry:
            return False  # not clean, or recorded by an older torchcheck
        return all(self._module_hash(m) == h for m, h in entry["dependencies"].items()) and all(
            self._found(search) == found for search, found in entry["searches"].items()) and all(
            (self.project.resolve(name) or "") == module for name, module in entry.get("resolved", {}).items())

    def remember_clean(self, path: Path, key: str, dependencies) -> None:
        if self.cache is not None:
            self.clean[str(path)] = {
                "key": key, "dependencies": {m: self._module_hash(m) for m in sorted(dependencies.modules)},
                "searches": {f"{m} {name}": list(found) for (m, name), found in sorted(dependencies.searches.items())},
                "resolved": {name: module or "" for name, module in sorted(dependencies.resolutions.items())}}
            self.cache.set(CACHE_KEY, self.clean)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    session = parent.config.stash.get(_LINT, None)
    if session is None or file_path.suffix not in (".py", ".ipynb"):
        return None
    from torchcheck.config import is_excluded

    try:
        relative = file_path.resolve().relative_to(Path(str(parent.config.rootpath)).resolve())
    except ValueError:
        relative = Path(file_path.name)
    if is_excluded(relative, session.config):
        return None
    return TorchcheckFile.from_parent(parent, path=file_path)


class TorchcheckFile(pytest.File):
    def collect(self):
        yield TorchcheckItem.from_parent(self, name="torchcheck")


class TorchcheckError(Exception):
    """A lint item's findings, already rendered."""


class TorchcheckItem(pytest.Item):
    def runtest(self) -> None:
        from torchcheck.linter import lint_document
        from torchcheck.report import read_sources

        session: _LintSession = self.config.stash[_LINT]
        path = Path(self.path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TorchcheckError(f"{path}: cannot read: {exc}") from None
        key = session.key(path, data)
        if session.was_clean(path, key):
            return  # unchanged and clean last time
        result = lint_document(data, path, session.config, session.rules, session.project,
                               session.names.get(path.resolve()))
        findings = sorted(result.findings, key=lambda f: f.sort_key)
        self.user_properties.append((PROPERTY, json.dumps([f.code + " " + f.name for f in findings])))
        if not findings:
            session.remember_clean(path, key, result.dependencies)
            return
        raise TorchcheckError(render_text(findings, read_sources(findings, {result.path: result.source})))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, TorchcheckError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"torchcheck lint {self.path.name}"


def render_text(findings, sources) -> str:
    """The text `torchcheck lint` prints, without colour, for a failure report."""
    from rich.console import Console

    from torchcheck.report import Summary, render

    buffer = io.StringIO()
    console = Console(file=buffer, color_system=None, force_terminal=False, width=120, highlight=False, soft_wrap=True)
    render(Summary(len({f.path for f in findings}), findings, sources), "text", console)
    return buffer.getvalue().rstrip()


# -- runtime harness ------------------------------------------------------------------------------
@pytest.fixture
def torchcheck_watch(request):
    """Run this test's body under the torchcheck runtime harness; findings fail the test.

    Yields the `torchcheck.Run` (its `.findings` are filled in as the test runs)."""
    run = _make_run(request.node)
    request.node.stash[_RUN] = run
    yield run


_RUN = pytest.StashKey["object"]()


def _make_run(item):
    import torchcheck

    marker = item.get_closest_marker("torchcheck")
    options = dict(marker.kwargs) if marker is not None else {}
    return torchcheck.watch(mode=options.get("mode", "collect"), select=tuple(options.get("select") or ()),
                            ignore=tuple(options.get("ignore") or ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    run = item.stash.get(_RUN, None)
    if run is None and item.config.getoption("torchcheck_runtime") and "torch" in sys.modules \
            and not isinstance(item, TorchcheckItem):
        run = _make_run(item)
    if run is None:
        return (yield)
    try:
        with run:
            result = yield
    finally:
        findings = run.findings
        item.user_properties.append((PROPERTY, json.dumps([f.code + " " + f.name for f in findings])))
    if findings:
        from torchcheck.report import read_sources

        pytest.fail("torchcheck runtime findings:\n" + render_text(findings, read_sources(findings)), pytrace=False)
    return result


# -- summary ---------------------------------------------------------------------------------------
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    counts: Counter = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == PROPERTY:
                    counts.update(json.loads(value))
    if not counts and not config.getoption("torchcheck") and not config.getoption("torchcheck_runtime"):
        return
    terminalreporter.section("torchcheck")
    if not counts:
        terminalreporter.write_line("no findings")
        return
    for rule, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        terminalreporter.write_line(f"{count:5d}  {rule}")
