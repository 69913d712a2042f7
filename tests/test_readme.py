"""The README's two commands are the ones CI and users run."""
import re


def test_ci_runs_the_readme_test_command(root):
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.+?)\n```", readme, re.S)
    test_command = "python -m pip install -e '.[test]' torch==2.14.1 torchvision==0.29.1 && python -m pytest -q"
    assert test_command in blocks
    assert any(b.startswith("python -m pip install . && torchcheck lint ") for b in blocks)
    assert test_command in (root / ".ci" / "run").read_text(encoding="utf-8")
