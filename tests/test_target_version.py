"""The target torch version is read from the project (its torch requirement's lower bound) unless
the config names it, and version-gated rules follow it."""

import pytest

from torchcheck.cli import main
from torchcheck.config import load_config
from torchcheck.target_version import infer_target_version, torch_lower_bound

LOAD = 'import torch\nstate = torch.load("model.pt")\n'


@pytest.mark.parametrize("requirement, bound", [
    ("torch>=2.1", (2, 1)),
    ("torch >= 1.13.1, <3", (1, 13, 1)),
    ("torch[opt]~=2.2.0", (2, 2, 0)),
    ("torch==1.12.1+cu116", (1, 12, 1)),
    ("torch>2.0 ; python_version >= '3.9'", (2, 0)),
    ("torch<3", None),
    ("torch", None),
    ("torchvision>=0.15", None),
    ("pytorch-lightning>=2.0", None),
])
def test_torch_lower_bound(requirement, bound):
    assert torch_lower_bound(requirement) == bound


@pytest.mark.parametrize("name, text, source", [
    ("pyproject.toml", '[project]\nname = "p"\ndependencies = ["numpy", "torch>=2.6"]\n', "pyproject.toml [project]"),
    ("requirements.txt", "numpy\ntorch>=2.6  # cuda build\n", "requirements.txt"),
    ("requirements-train.txt", "torch>=2.6\n", "requirements-train.txt"),
    ("setup.cfg", "[options]\ninstall_requires =\n    numpy\n    torch>=2.6\n", "setup.cfg"),
    ("setup.py", 'from setuptools import setup\nsetup(install_requires=["torch>=2.6.0", "numpy"])\n', "setup.py"),
])
def test_inferred_from_each_kind_of_project_file(tmp_path, name, text, source):
    (tmp_path / name).write_text(text)
    version, where = infer_target_version(tmp_path)
    assert version[:2] == (2, 6) and where.startswith(source)
    (tmp_path / "load.py").write_text(LOAD)
    assert main(["lint", "--no-cache", str(tmp_path)]) == 0  # torch.load is safe by default from 2.6


def test_config_overrides_the_requirement(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch>=2.6\n")
    (tmp_path / "pyproject.toml").write_text('[tool.torchcheck]\ntarget-version = "2.1"\n')
    config = load_config(tmp_path)
    assert config.target_version == (2, 1) and "target-version" in config.target_version_source
    (tmp_path / "load.py").write_text(LOAD)
    assert main(["lint", "--no-cache", str(tmp_path)]) == 1


def test_unknown_version_reports_and_show_settings_says_why(tmp_path, capsys):
    (tmp_path / "load.py").write_text(LOAD)
    assert main(["lint", "--no-cache", "--format", "concise", str(tmp_path)]) == 1
    assert "TC601" in capsys.readouterr().out
    assert main(["lint", "--show-settings", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "target torch version: unknown (no torch requirement found" in out


def test_show_settings_names_the_source_and_the_rules_turned_off(tmp_path, capsys):
    (tmp_path / "requirements.txt").write_text("torch>=1.8,<2\n")
    assert main(["lint", "--show-settings", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "target torch version: 1.8 (requirements.txt: torch>=1.8,<2)" in out
    assert "torchvision-pretrained-deprecated" in out  # weights= needs torchvision 0.13 (torch 1.12)


def test_torch_own_sources_are_not_reported(tmp_path):
    package = tmp_path / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "serialization_helpers.py").write_text(LOAD)
    assert main(["lint", "--no-cache", str(tmp_path)]) == 0
