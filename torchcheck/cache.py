"""Per-file result cache, ruff-style, in `.torchcheck_cache/`.

A file's entry is found by torchcheck's version, the effective config, the working folder (findings
name files from it) and the file's own content.
It records what its findings were read from: every module the file's analysis consulted (a model's
forward in another file, the modules that one asked in turn) with the parts of it read (`units`:
its top-level functions and classes, and its own level), the lines of those modules its evidence
shows, the names it searched the importers of a module for (who calls an evaluation function), and
the imported names it looked for in the tree that a file added (or removed) could make name another
module.

The entry is used while all of them are unchanged: a module read whole must have the same content;
of a module read in parts, those parts must have the same text, and the evidence shown the same
place; a search of importers must find the same files. What each search finds is kept once for
the tree, in `searches.json`, with a digest of the importers' content hashes: it is searched again
only when that digest changes, and an entry that relied on it is not rewritten unless the files
found change. So an edit re-lints the files that read what it changed, and an edit inside a function no
other file asked about re-lints no other file. To compare parts, the latest text of each module
read in parts is kept (compressed) in `sources/`. Entries are written atomically (temp file +
rename): concurrent runs are safe.

A run of the same files, config and working folder as the last (`LastRun`) reads no entry of a
file whose content and modules read are unchanged since: a run in which nothing changed reads
only `last_run.json`.

A warm run does not read a file again whose content hash it already knows: `stats.json` keeps, for
each file, the hash with the size, change time and modification time it had (as git's index does).
A file changed within `SETTLING_NS` of being hashed is hashed again next time, as a second change
in the same clock tick would leave its times unchanged."""
from __future__ import annotations

import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from torchcheck import __version__
from torchcheck.analysis.import_graph import resolved
from torchcheck.analysis.units import Unit, module_units, part_key, parts_unchanged
from torchcheck.digest import blake2b
from torchcheck.types import Edit, Finding, Fix, FixSafety, RelatedLocation, Severity

CACHE_DIR = ".torchcheck_cache"
OUTLINES = "outlines.json"
DIGEST_LENGTH = 32  # of a content hash (hex)
SOURCES = "sources"  # each module's latest linted text, to tell which of its parts an edit changed
STATS = "stats.json"
LAST_RUN = "last_run.json"  # the latest run's findings by file (`LastRun`)
LAST_RUN_FORMAT = 1
CUTS = "cuts"  # where each module parsed in pieces is cut (`pieces.plan`), for its latest content
SEARCHES = "searches.json"  # "<module> <name>" -> [`importers_digest` of the module, its importers that mention the name]
SETTLING_NS = 2_000_000_000  # a file's times are trusted once this much older than its hash


def content_digest(data: bytes) -> str:
    return blake2b(data, digest_size=DIGEST_LENGTH // 2).hexdigest()


def tree_key(modules) -> str:
    """A digest of the tree's set of modules."""
    return blake2b("\n".join(sorted(modules)).encode(), digest_size=16).hexdigest()


def run_context(files: list[Path], modules: dict[str, Path], fingerprint: str) -> str:
    """One hash of what a run's findings depend on besides the files' content: torchcheck's version,
    the config, the working folder (findings name files from it), and the files with their module names."""
    names = {path: name for name, path in modules.items()}
    lines = [__version__, fingerprint, os.getcwd(), *(f"{resolved(f)} {names.get(f, '')}" for f in files)]
    return content_digest("\n".join(lines).encode())


def entry_key(file: Path, digest: str, fingerprint: str) -> str:
    """Findings name files from the working folder: a run from another folder has entries of its own."""
    material = "\0".join([__version__, fingerprint, os.getcwd(), str(resolved(file)), digest])
    return blake2b(material.encode(), digest_size=32).hexdigest()


class Entry:
    """A file's cached findings and what they read. Stored as text blocks rather than JSON objects:
    a warm run reads thousands of entries, and most of what they hold (the parts read, the names
    resolved) is only looked at when something changed."""

    def __init__(self, findings: list[Finding], dependencies: dict[str, str] | str,
                 searches: dict[str, list[str]], cited: dict[str, list[int]] | None = None,
                 resolutions: dict[str, str] | str = "", tree: str = "", read: tuple[list[str], str] | None = None) -> None:
        self.findings = findings
        # module -> its content hash, followed by the parts read where not all of it ("<digest> <part> <part>",
        # each part by its `part_key`); kept as "<module> <value>" lines until asked for
        self._dependencies = dependencies
        self.searches = searches  # "<module> <name>" -> the module's importers that mentioned the name
        self.cited = cited or {}  # module -> lines the findings show as evidence
        self._resolutions = resolutions  # dotted name -> the module it named ("": none); "<name> <module>" lines
        self.tree = tree  # `tree_key` when written: while the tree's modules are the same, names resolve as before
        self.read = read  # the modules read, and one digest of their content hashes then

    @staticmethod
    def dependency(digest: str, parts: Iterable[str] | None) -> str:
        return digest if parts is None else " ".join([digest.ljust(DIGEST_LENGTH), *sorted(map(part_key, parts))])

    @property
    def dependencies(self) -> dict[str, str]:
        if isinstance(self._dependencies, str):
            self._dependencies = _pairs(self._dependencies)
        return self._dependencies

    @property
    def resolutions(self) -> dict[str, str]:
        if isinstance(self._resolutions, str):
            self._resolutions = _pairs(self._resolutions)
        return self._resolutions

    def outdated(self, module_hashes: dict[str, str]) -> list[str]:
        """The modules read whose content changed since."""
        if self.read is not None and self.read[1] == _read_digest(self.read[0], module_hashes):
            return []
        return [m for m, value in self.dependencies.items() if module_hashes.get(m) != value[:DIGEST_LENGTH]]

    def parts(self, module: str) -> list[str] | None:
        """The parts of `module` read, by `part_key`; None if all of it was."""
        names = self.dependencies[module][DIGEST_LENGTH:].split()
        return names or None

    def renew(self, module_hashes: dict[str, str]) -> None:
        """Name the current content of the modules read (whose parts read are unchanged)."""
        self._dependencies = {m: module_hashes.get(m, "").ljust(DIGEST_LENGTH) + value[DIGEST_LENGTH:]
                              for m, value in self.dependencies.items()}

    def stored(self, module_hashes: dict[str, str]) -> dict:
        modules = list(self.dependencies)
        return {"format": ENTRY_FORMAT, "findings": [f.to_dict() for f in self.findings], "modules": " ".join(modules),
                "read": _read_digest(modules, module_hashes), "dependencies": _lines(self.dependencies),
                "searches": self.searches, "cited": self.cited,
                "resolutions": _lines(self.resolutions), "tree": self.tree}

    @classmethod
    def from_stored(cls, data: dict) -> Entry | None:
        if data.get("format") != ENTRY_FORMAT:
            return None
        return cls([_finding(item) for item in data["findings"]], str(data["dependencies"]),
                   {str(key): list(found) for key, found in data["searches"].items()},
                   {m: list(lines) for m, lines in data["cited"].items()}, str(data["resolutions"]), data["tree"],
                   (data["modules"].split(" ") if data["modules"] else [], data["read"]))


ENTRY_FORMAT = 5


def importers_digest(graph, module: str, module_hashes: dict[str, str]) -> str:
    """One hash of which files import `module` and what each holds: while it is the same, a search of
    their text finds the same files."""
    importers = sorted(graph.importers_of_module(module))
    return content_digest("\n".join(f"{m} {module_hashes.get(m, '')}" for m in importers).encode())


def _read_digest(modules: list[str], module_hashes: dict[str, str]) -> str:
    """One hash of the current content hashes of `modules`: an entry none of whose modules changed is
    told by comparing it alone."""
    return content_digest("\n".join([module_hashes.get(m, "") for m in modules]).encode())


def _lines(pairs: dict[str, str]) -> str:
    return "\n".join(f"{key} {value}" for key, value in pairs.items())


def _pairs(lines: str) -> dict[str, str]:
    pairs = {}
    for line in lines.split("\n") if lines else ():
        key, _, value = line.partition(" ")
        pairs[key] = value
    return pairs


class Cache:
    def __init__(self, root: Path) -> None:
        self.folder = root / CACHE_DIR / __version__
        self._folder_text = str(self.folder)
        self._source_index: dict[str, str] | None = None
        self._units: dict[tuple[str, str], dict[str, Unit] | None] = {}
        self._importers_digests: dict[str, str] = {}
        self._search_table: dict[str, list] | None = None
        self._searched: dict[str, list[str]] = {}  # found now, this run
        self._table_changed = False

    def content_hashes(self, files: list[Path]) -> dict[Path, str]:
        """Each file's content hash ("" for an unreadable file); files whose size and times are those
        recorded with their hash are not read."""
        known = self._stats()
        settled = time.time_ns() - SETTLING_NS
        hashes: dict[Path, str] = {}
        stats: dict[str, list] = {}
        for file in files:
            name = str(resolved(file))
            try:
                status = os.stat(name)
                stamp = [status.st_size, status.st_mtime_ns, status.st_ctime_ns]
                record = known.get(name)
                if record is not None and record[:3] == stamp:
                    hashes[file] = record[3]
                    stats[name] = record
                    continue
                hashes[file] = content_digest(file.read_bytes())
            except OSError:
                hashes[file] = ""
                continue
            if max(stamp[1], stamp[2]) < settled:
                stats[name] = [*stamp, hashes[file]]
        if any(known.get(name) != record for name, record in stats.items()):
            others = {name: record for name, record in known.items() if name not in stats and os.path.exists(name)}
            self._write(self.folder / STATS, others | stats)  # files linted by other runs, unless deleted
        return hashes

    def _stats(self) -> dict[str, list]:
        try:
            data = json.loads((self.folder / STATS).read_bytes())
            return {str(name): list(record) for name, record in data.items()
                    if isinstance(record, list) and len(record) == 4 and isinstance(record[3], str)}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def is_current(self, entry: Entry, outdated: list[str], module_hashes: dict[str, str], files: dict[str, Path],
                   graph, tree: str) -> bool:
        """Whether nothing the entry's findings read changed: the modules read (or, of the `outdated`
        ones read in parts, those parts and the place of the evidence shown), what its searches of
        importers found and the resolutions of imported names."""
        for module in outdated:
            parts = entry.parts(module)
            if parts is None or module not in files or not parts_unchanged(
                    self._units_before(files[module], entry.dependencies[module][:DIGEST_LENGTH]),
                    self._units_now(files[module], module_hashes[module]), parts, entry.cited.get(module, ())):
                return False
        return all(self.found(key, graph, module_hashes) == found for key, found in entry.searches.items()) and (
            entry.tree == tree or all((graph.resolve(name) or "") == module for name, module in entry.resolutions.items()))

    def found(self, search: str, graph, module_hashes: dict[str, str]) -> list[str]:
        """What a search ("<module> <name>") finds in the tree now: the recorded result while the
        module's importers and their content are unchanged, else searched again."""
        if search not in self._searched:
            module, _, name = search.partition(" ")
            digest = self._importers_digest(module, graph, module_hashes)
            recorded = self._searches().get(search)
            if recorded is not None and recorded[0] == digest:
                self._searched[search] = recorded[1]
            else:
                self.record_search(search, graph.importers_mentioning(module, name), graph, module_hashes)
        return self._searched[search]

    def record_search(self, search: str, found: list[str], graph, module_hashes: dict[str, str]) -> None:
        """What a search found in this run's tree, kept for the next runs (`save_searches`)."""
        self._searched[search] = found
        module = search.partition(" ")[0]
        record = [self._importers_digest(module, graph, module_hashes), found]
        if self._searches().get(search) != record:
            self._searches()[search] = record
            self._table_changed = True

    def save_searches(self, modules) -> None:
        if self._table_changed:
            self._write(self.folder / SEARCHES, {key: record for key, record in self._searches().items()
                                                 if key.partition(" ")[0] in modules})

    def recorded_search(self, search: str) -> list[str] | None:
        """What a search ("<module> <name>") found when last made, if recorded."""
        record = self._searches().get(search)
        return record[1] if record is not None else None

    def _searches(self) -> dict[str, list]:
        if self._search_table is None:
            try:
                data = json.loads((self.folder / SEARCHES).read_bytes())
                self._search_table = {str(key): [str(digest), [str(m) for m in found]]
                                      for key, (digest, found) in data.items()}
            except (OSError, ValueError, TypeError, AttributeError):
                self._search_table = {}
        return self._search_table

    def _importers_digest(self, module: str, graph, module_hashes: dict[str, str]) -> str:
        if module not in self._importers_digests:
            self._importers_digests[module] = importers_digest(graph, module, module_hashes)
        return self._importers_digests[module]

    def _units_before(self, path: Path, digest: str) -> dict[str, Unit] | None:
        key = (str(resolved(path)), digest)
        if key not in self._units:
            self._units[key] = None
            if self._sources().get(key[0]) == digest:
                try:
                    self._units[key] = module_units(zlib.decompress((self._source_path(key[0])).read_bytes()))
                except (OSError, zlib.error):
                    pass
        return self._units[key]

    def _units_now(self, path: Path, digest: str) -> dict[str, Unit] | None:
        key = (str(resolved(path)), digest)
        if key not in self._units:
            try:
                source = path.read_bytes()
            except OSError:
                source = None
            ok = source is not None and content_digest(source) == digest
            self._units[key] = module_units(source) if ok else None
        return self._units[key]

    def keep_sources(self, files: dict[Path, str]) -> None:
        """Keep the text of these modules (by content hash), the latest only: the next run compares
        their parts with it."""
        index = self._sources()
        changed = False
        for path, digest in files.items():
            name = str(resolved(path))
            if index.get(name) == digest:
                continue
            try:
                source = path.read_bytes()
            except OSError:
                continue
            if content_digest(source) != digest:
                continue  # changed during the run
            self._write_bytes(self._source_path(name), zlib.compress(source, 1))
            index[name] = digest
            changed = True
        if changed:
            self._write(self.folder / SOURCES / "index.json", index)

    def cut_plan(self, path: Path, digest: str) -> dict | None:
        """Where the module is cut, if kept for this content."""
        try:
            data = json.loads(self._keyed_path(CUTS, str(resolved(path)), ".json").read_bytes())
            return data["plan"] if data["digest"] == digest and isinstance(data["plan"], dict) else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put_cut_plan(self, path: Path, digest: str, plan: dict) -> None:
        self._write(self._keyed_path(CUTS, str(resolved(path)), ".json"), {"digest": digest, "plan": plan})

    def _sources(self) -> dict[str, str]:
        if self._source_index is None:
            try:
                data = json.loads((self.folder / SOURCES / "index.json").read_bytes())
                self._source_index = {str(k): str(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError):
                self._source_index = {}
        return self._source_index

    def _source_path(self, name: str) -> Path:
        return self._keyed_path(SOURCES, name, ".z")

    def _keyed_path(self, kind: str, name: str, suffix: str) -> Path:
        """The file keeping something of the module at (resolved path) `name`, its latest version only."""
        return self.folder / kind / (blake2b(name.encode(), digest_size=16).hexdigest() + suffix)

    def _path(self, key: str) -> str:
        # A warm run reads thousands of entries: a string, not a Path, saves a fifth of its time here.
        return os.path.join(self._folder_text, key[:2], key + ".json")

    def get(self, key: str) -> Entry | None:
        try:
            with open(self._path(key), "rb") as handle:
                return Entry.from_stored(json.loads(handle.read()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, key: str, entry: Entry, module_hashes: dict[str, str]) -> None:
        self._write(Path(self._path(key)), entry.stored(module_hashes))

    def outlines(self) -> dict[str, tuple[list[str], list[str]]]:
        """What each file content imports and defines at top level, by content hash: a warm run
        rebuilds the import graph from these instead of reading every file's imports again."""
        try:
            data = json.loads((self.folder / OUTLINES).read_text(encoding="utf-8"))
            return {digest: (list(imported), list(defined)) for digest, (imported, defined) in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def last_run(self) -> dict:
        """The latest run's record (`LastRun`): format, context and files; empty if none is readable."""
        try:
            data = json.loads((self.folder / LAST_RUN).read_bytes())
            if data.get("format") == LAST_RUN_FORMAT and isinstance(data["context"], str) and isinstance(data["files"], dict):
                return data
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return {}

    def put_last_run(self, data: dict) -> None:
        self._write(self.folder / LAST_RUN, data)

    def put_outlines(self, outlines: dict[str, tuple[list[str], list[str]]]) -> None:
        self._write(self.folder / OUTLINES, outlines)

    def _write(self, path: Path, data) -> None:
        self._write_bytes(path, json.dumps(data).encode())

    def _write_bytes(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not (self.folder.parent / ".gitignore").exists():
                (self.folder.parent / ".gitignore").write_text("# created by torchcheck\n*\n")
            fd, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, path)
        except OSError:
            pass  # a read-only tree just runs uncached


class LastRun:
    """The latest run's findings by file, each with the file's content hash, the modules its findings
    read and their searches of importers, kept for the next run of the same `run_context`.

    A file whose content and modules read are unchanged, and none of whose searches can find
    otherwise, keeps its findings without its entry being read: after an edit, only the entries of
    the files that read the edited module are looked up."""

    def __init__(self, cache: Cache, context: str) -> None:
        self._cache = cache
        self._context = context
        last = cache.last_run()
        # path -> [content hash, findings, modules read, searches]
        self._last: dict[str, list] = last["files"] if last.get("context") == context else {}
        self._now: dict[str, list] = {}

    def hashes(self, modules: dict[str, Path]) -> dict[str, str]:
        """The modules' content hashes in the last run ("" where it has none)."""
        return {name: str((self._last.get(str(resolved(path))) or [""])[0]) for name, path in modules.items()}

    def still_holding(self, files: list[Path], hashes: dict[Path, str], changed: set[str],
                      may_find_otherwise: Callable[[str], bool]) -> dict[Path, list[Finding]]:
        """The files whose findings in the last run still hold, with those findings: the file is
        unchanged, it read none of the `changed` modules, and none of its searches of importers
        ("<module> <name>") may find otherwise."""
        holding = {}
        for file in files:
            key = str(resolved(file))
            record = self._last.get(key)
            try:
                if record is None or record[0] != hashes[file] or changed and not changed.isdisjoint(record[2].split()):
                    continue
                if any(may_find_otherwise(search) for search in record[3]):
                    continue
                holding[file] = [_finding(item) for item in record[1]]
            except (IndexError, KeyError, TypeError, ValueError, AttributeError):  # not written by this version
                continue
            self._now[key] = record
        return holding

    def record(self, file: Path, digest: str, findings: list[Finding], modules_read: Iterable[str],
               searches: Iterable[str]) -> None:
        self._now[str(resolved(file))] = [digest, [f.to_dict() for f in findings], " ".join(modules_read), sorted(searches)]

    def save(self) -> None:
        if self._now != self._last:
            self._cache.put_last_run({"format": LAST_RUN_FORMAT, "context": self._context, "files": self._now})


def _finding(item: dict) -> Finding:
    fix = item.get("fix")
    if fix is not None:
        fix = Fix(fix["title"], FixSafety(fix["safety"]),
                  tuple(Edit(e["start"], e["end"], e["content"], e.get("cell")) for e in fix["edits"]))
    related = tuple(RelatedLocation(**r) for r in item["related"])  # KeyError: written before `related`, a miss
    return Finding(item["code"], item["name"], item["message"], item["path"], item["line"], item["column"],
                   item["end_line"], item["end_column"], Severity(item["severity"]), fix,
                   related=related, cell=item.get("cell"), cell_id=item.get("cell_id"))
