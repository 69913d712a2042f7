"""The torch version a project targets, read from the project itself: the lower bound of its torch
requirement in `pyproject.toml` (`[project] dependencies`), `requirements*.txt`, `setup.cfg`
(`install_requires`) or `setup.py`. Version-gated rules use it; `[tool.torchcheck] target-version`
overrides it."""
from __future__ import annotations

import re
import sys
from pathlib import Path

# `torch>=2.1`, `torch[opt] ~= 2.2.0`, `torch==1.13.1+cu117`: the name, then its version clauses.
_REQUIREMENT = re.compile(r"^\s*torch\s*(\[[^\]]*\])?\s*(?P<spec>(?:[<>=!~]=?|===)[^;#]*)", re.IGNORECASE)
_LOWER_BOUND = re.compile(r"(>=|==|~=|===|>)\s*v?(\d+(?:\.\d+){0,2})")
_QUOTED = re.compile(r"""["'](torch\s*(?:\[[^\]]*\])?\s*[<>=!~][^"']*)["']""", re.IGNORECASE)


def torch_lower_bound(requirement: str) -> tuple[int, ...] | None:
    """(2, 1) for `torch>=2.1,<3`; None for another package or a requirement without a lower bound."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        return None
    bounds = [tuple(int(p) for p in version.split(".")) for _, version in _LOWER_BOUND.findall(match.group("spec"))]
    return max(bounds) if bounds else None


def infer_target_version(root: Path) -> tuple[tuple[int, ...] | None, str]:
    """The project's torch lower bound and where it was found, or (None, why not)."""
    for source, requirements in _requirement_sources(root):
        for requirement in requirements:
            bound = torch_lower_bound(requirement)
            if bound is not None:
                return bound, f"{source}: {requirement.strip()}"
    return None, "no torch requirement found (pyproject.toml, requirements*.txt, setup.cfg, setup.py)"


def toml_reader():
    """tomllib (tomli before Python 3.11), imported only to read a pyproject.toml: a script linted on
    its own often has none, and starts faster without it."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # pragma: no cover

    return tomli  # pragma: no cover


def _requirement_sources(root: Path):
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        tomllib = toml_reader()
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            project = {}
        dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
        yield "pyproject.toml [project] dependencies", [d for d in dependencies if isinstance(d, str)]
    for path in sorted(root.glob("requirements*.txt")):
        yield path.name, _lines(path)
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        import configparser  # here: most trees have no setup.cfg, and a one-file lint starts faster

        parser = configparser.ConfigParser()
        try:
            parser.read_string(setup_cfg.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, configparser.Error):
            pass
        else:
            yield "setup.cfg install_requires", parser.get("options", "install_requires", fallback="").splitlines()
    setup_py = root / "setup.py"
    if setup_py.is_file():
        yield "setup.py", _QUOTED.findall("\n".join(_lines(setup_py)))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
