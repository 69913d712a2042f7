"""The rule catalog as documents: `torchcheck explain`, the files in `rules/` and the README's
rule table are all rendered from the rule classes here, so there is one source of truth."""
from __future__ import annotations

from pathlib import Path

from torchcheck.registry import catalog


def render_markdown(rule) -> str:
    fix = f"{rule.fix_safety.value} — {rule.fix_reason}" if rule.fix_safety else "none"
    where = ("static and runtime" if rule.runtime_check and hasattr(rule, "VALID")
             else "runtime only" if rule.runtime_check else "static")
    header = [
        f"# {rule.code} `{rule.name}`",
        "",
        f"{rule.summary}.",
        "",
        f"- Severity: {rule.severity.value}",
        f"- Checked: {where}" + (f" (the runtime check `{rule.name}` shares this name)" if rule.runtime_check else ""),
        f"- Fix: {fix}",
        "",
    ]
    return "\n".join(header) + rule.doc().rstrip() + "\n"


def rule_table() -> str:
    lines = ["| Code | Name | What it finds | Fix | Runtime |", "|---|---|---|---|---|"]
    for rule in catalog():
        fix = rule.fix_safety.value if rule.fix_safety else ""
        lines.append(f"| {rule.code} | [`{rule.name}`](rules/{rule.code}-{rule.name}.md) | {rule.summary} | {fix} |"
                     f" {'yes' if rule.runtime_check else ''} |")
    return "\n".join(lines) + "\n"


def fix_table() -> str:
    """Every rule that offers a fix, its safety and why."""
    lines = ["| Rule | Fix | Why |", "|---|---|---|"]
    for rule in catalog():
        if rule.fix_safety is not None:
            lines.append(f"| `{rule.name}` ({rule.code}) | {rule.fix_safety.value} | {rule.fix_reason} |")
    return "\n".join(lines) + "\n"


def catalog_files() -> dict[str, str]:
    """The files of the `rules/` folder: one document per rule and an index."""
    files = {f"{r.code}-{r.name}.md": render_markdown(r) for r in catalog()}
    files["README.md"] = (
        "# The torchcheck rule catalog\n\n"
        "Generated from the rule classes in `torchcheck/` by `python -m torchcheck.catalog`; do not edit by hand"
        " (tests/test_catalog.py fails when these files are stale).\n\n" + rule_table()
    )
    return files


def write_catalog(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    wanted = catalog_files()
    for stale in folder.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (folder / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_catalog(Path(__file__).resolve().parent.parent / "rules")
