"""Whole programs in fixtures/static with their expected findings beside them as snapshots.

A new fixture is a new test. Refresh the snapshots with TORCHCHECK_UPDATE_SNAPSHOTS=1."""
import os
from pathlib import Path

import pytest

from torchcheck.config import Config
from torchcheck.engine import lint_paths

STATIC = Path(__file__).resolve().parent.parent / "fixtures" / "static"
CASES = sorted(p for p in STATIC.iterdir() if p.suffix == ".py" or (p.is_dir() and not p.name.startswith((".", "_"))))


def snapshot(path: Path) -> str:
    result = lint_paths([path], Config(), jobs=1)
    lines = []
    for f in result.findings:
        where = Path(f.path).resolve().relative_to(STATIC.resolve()).as_posix()
        lines.append(f"{where}:{f.line}:{f.column} {f.code} {f.name}")
    return "\n".join(lines) + ("\n" if lines else "")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fixture_snapshot(path):
    expected_file = path.with_name(path.stem + ".expected")
    actual = snapshot(path)
    if os.environ.get("TORCHCHECK_UPDATE_SNAPSHOTS"):
        expected_file.write_text(actual)
    assert expected_file.exists(), f"missing snapshot {expected_file.name}; run with TORCHCHECK_UPDATE_SNAPSHOTS=1"
    assert actual == expected_file.read_text()


@pytest.mark.parametrize("path", [p for p in CASES if p.stem.endswith("_clean")], ids=lambda p: p.stem)
def test_clean_fixture_has_no_findings(path):
    assert snapshot(path) == ""


def test_every_buggy_fixture_has_findings():
    for path in CASES:
        if not path.stem.endswith("_clean"):
            assert snapshot(path), f"{path.name} is meant to be buggy but gives no finding"
