"""Per-file result cache, ruff-style, in `.torchcheck_cache/`.

A file's entry is keyed by torchcheck's version, the effective config, the file's own content and
the content of the files of the tree it imports and that import it (cross-file facts flow both
ways: a model's forward, an evaluation function's callers), so changing one file re-lints exactly
what can see it. Entries are written atomically (temp file + rename): concurrent runs are safe."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from torchcheck import __version__
from torchcheck.types import Edit, Finding, Fix, FixSafety, RelatedLocation, Severity

CACHE_DIR = ".torchcheck_cache"


def content_hashes(files: list[Path]) -> dict[Path, str]:
    hashes = {}
    for file in files:
        try:
            hashes[file] = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError:
            hashes[file] = ""
    return hashes


def dependency_keys(files: list[Path], hashes: dict[Path, str], project, fingerprint: str) -> dict[Path, str]:
    """The cache key of every file: itself plus its one-hop neighbours in the import graph, the files
    its cross-file questions can reach."""
    module_of = {path: name for name, path in project.files.items()}
    keys = {}
    for file in files:
        name = module_of.get(file)
        neighbours = project.neighbours(name) if name is not None else set()
        contents = sorted(hashes.get(project.files[m], "") for m in neighbours)
        material = "\0".join([__version__, fingerprint, str(file.resolve()), hashes[file], *contents])
        keys[file] = hashlib.sha256(material.encode()).hexdigest()
    return keys


class Cache:
    def __init__(self, root: Path) -> None:
        self.folder = root / CACHE_DIR / __version__

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[Finding] | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            return [_finding(item) for item in data]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, findings: list[Finding]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not (path.parent.parent.parent / ".gitignore").exists():
                (path.parent.parent.parent / ".gitignore").write_text("# created by torchcheck\n*\n")
            fd, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump([f.to_dict() for f in findings], handle)
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
