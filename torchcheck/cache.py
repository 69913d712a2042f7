"""Per-file result cache, ruff-style, in `.torchcheck_cache/`.

A file's entry is found by torchcheck's version, the effective config and the file's own content.
It records what its findings were read from: the content of every module the file's analysis
consulted (a model's forward in another file, the modules that one asked in turn) and the sets of
importers it asked about (who calls an evaluation function). The entry is used only while all of
them are unchanged, so changing one file re-lints exactly the files that read it. Entries are
written atomically (temp file + rename): concurrent runs are safe."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torchcheck import __version__
from torchcheck.analysis.import_graph import resolved
from torchcheck.types import Edit, Finding, Fix, FixSafety, RelatedLocation, Severity

CACHE_DIR = ".torchcheck_cache"
OUTLINES = "outlines.json"


def content_hashes(files: list[Path]) -> dict[Path, str]:
    hashes = {}
    for file in files:
        try:
            hashes[file] = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError:
            hashes[file] = ""
    return hashes


def entry_key(file: Path, digest: str, fingerprint: str) -> str:
    material = "\0".join([__version__, fingerprint, str(resolved(file)), digest])
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass
class Entry:
    findings: list[Finding]
    dependencies: dict[str, str]  # module -> content hash
    importers: dict[str, list[str]]  # module -> the modules importing it

    def is_current(self, module_hashes: dict[str, str], graph) -> bool:
        return all(module_hashes.get(m) == h for m, h in self.dependencies.items()) and all(
            sorted(graph.importers_of_module(m)) == names for m, names in self.importers.items())


class Cache:
    def __init__(self, root: Path) -> None:
        self.folder = root / CACHE_DIR / __version__
        self._folder_text = str(self.folder)

    def _path(self, key: str) -> str:
        # A warm run reads thousands of entries: a string, not a Path, saves a fifth of its time here.
        return os.path.join(self._folder_text, key[:2], key + ".json")

    def get(self, key: str) -> Entry | None:
        try:
            with open(self._path(key), "rb") as handle:
                data = json.loads(handle.read())
            return Entry([_finding(item) for item in data["findings"]], dict(data["dependencies"]),
                         {m: list(names) for m, names in data["importers"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, key: str, entry: Entry) -> None:
        self._write(Path(self._path(key)), {"findings": [f.to_dict() for f in entry.findings],
                                      "dependencies": entry.dependencies, "importers": entry.importers})

    def outlines(self) -> dict[str, tuple[list[str], list[str]]]:
        """What each file content imports and defines at top level, by content hash: a warm run
        rebuilds the import graph from these instead of reading every file's imports again."""
        try:
            data = json.loads((self.folder / OUTLINES).read_text(encoding="utf-8"))
            return {digest: (list(imported), list(defined)) for digest, (imported, defined) in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def put_outlines(self, outlines: dict[str, tuple[list[str], list[str]]]) -> None:
        self._write(self.folder / OUTLINES, outlines)

    def _write(self, path: Path, data) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not (self.folder.parent / ".gitignore").exists():
                (self.folder.parent / ".gitignore").write_text("# created by torchcheck\n*\n")
            fd, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(temp, path)
        except OSError:
            pass  # a read-only tree just runs uncached


def _finding(item: dict) -> Finding:
    fix = item.get("fix")
    if fix is not None:
        fix = Fix(fix["title"], FixSafety(fix["safety"]),
                  tuple(Edit(e["start"], e["end"], e["content"], e.get("cell")) for e in fix["edits"]))
    related = tuple(RelatedLocation(**r) for r in item["related"])  # KeyError: written before `related`, a miss
    return Finding(item["code"], item["name"], item["message"], item["path"], item["line"], item["column"],
                   item["end_line"], item["end_column"], Severity(item["severity"]), fix,
                   related=related, cell=item.get("cell"), cell_id=item.get("cell_id"))
