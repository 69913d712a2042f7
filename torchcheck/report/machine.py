"""Machine formats. Their shapes are part of torchcheck's interface (see the README):
- json: {"version", "findings": [Finding.to_dict()...], "summary": {...}}; in a notebook, findings,
  related locations and fix edits add `cell` (and `cell_id`), and lines and offsets count within the cell
- sarif: SARIF 2.1.0, one run, every catalog rule in tool.driver.rules; a finding's evidence as
  relatedLocations and as a codeFlow that walks it and ends at the finding; in a notebook, each
  location's `properties` hold `cell`, `cellId` and `cellLine` (regions count lines within the cell)
- github: GitHub Actions workflow commands, one `::error`/`::warning` per finding
"""
from __future__ import annotations

import json
from collections import Counter

from torchcheck import __version__

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/torchcheck/torchcheck"


def summary_dict(summary) -> dict:
    findings = summary.findings
    return {
        "files": summary.files,
        "findings": len(findings),
        "by_code": dict(sorted(Counter(f.code for f in findings).items())),
        "fixable": sum(1 for f in findings if f.fix is not None),
        "fixed": summary.fixed,
        "errors": sum(1 for f in findings if f.code in ("TC001", "TC002", "TC003")),
    }


def render_json(summary) -> str:
    data = {"version": __version__, "findings": [f.to_dict() for f in summary.findings], "summary": summary_dict(summary)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_sarif(summary) -> str:
    from torchcheck.registry import catalog

    rules = catalog()
    index = {rule.code: i for i, rule in enumerate(rules)}
    results = []
    for finding in summary.findings:
        result = {
            "ruleId": finding.code,
            "ruleIndex": index.get(finding.code, 0),
            "level": "error" if finding.severity.value == "error" else "warning",
            "message": {"text": finding.message},
            "locations": [_location(finding)],
        }
        if finding.related:
            result["relatedLocations"] = [
                {"id": i, **_location(r), "message": {"text": r.message}}
                for i, r in enumerate(finding.related, 1)
            ]
            steps = [*finding.related, finding]
            result["codeFlows"] = [{"threadFlows": [{"locations": [
                {"location": {**_location(step), "message": {"text": step.message}}}
                for step in steps
            ]}]}]
        if finding.module_path or finding.step is not None or finding.count != 1 or finding.ranks:
            result["properties"] = {k: v for k, v in (("module_path", finding.module_path), ("step", finding.step),
                                                      ("count", finding.count),
                                                      ("ranks", list(finding.ranks) or None)) if v is not None}
        results.append(result)
    driver = {
        "name": "torchcheck",
        "version": __version__,
        "semanticVersion": __version__,
        "informationUri": INFO_URI,
        "rules": [{
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": rule.doc().split("\n\n")[0].replace("## What it does\n", "")},
            "help": {"text": rule.doc(), "markdown": rule.doc()},
            "helpUri": f"{INFO_URI}/blob/main/rules/{rule.code}-{rule.name}.md",
            "defaultConfiguration": {"level": "error" if rule.severity.value == "error" else "warning"},
        } for rule in rules],
    }
    sarif = {"$schema": SARIF_SCHEMA, "version": "2.1.0",
             "runs": [{"tool": {"driver": driver}, "results": results, "columnKind": "unicodeCodePoints",
                       "originalUriBaseIds": {"%SRCROOT%": {"uri": "./"}}}]}
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


def _location(where) -> dict:
    """A SARIF location; in a notebook, its cell in `properties` (lines count within the cell)."""
    location = {"physicalLocation": _physical_location(where)}
    if where.cell is not None:
        location["properties"] = {"cell": where.cell, "cellId": where.cell_id, "cellLine": where.line}
    return location


def _physical_location(where) -> dict:
    """A SARIF physicalLocation for a finding or one of its related locations."""
    return {
        "artifactLocation": {"uri": where.path, "uriBaseId": "%SRCROOT%"},
        "region": {
            "startLine": where.line,
            "startColumn": where.column,
            "endLine": max(where.end_line, where.line),
            "endColumn": where.end_column if where.end_line > where.line else max(where.end_column, where.column),
        },
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(summary) -> str:
    lines = []
    for f in summary.findings:
        level = "error" if f.severity.value == "error" else "warning"
        cell = f" (cell {f.cell})" if f.cell is not None else ""
        props = (f"file={_escape_property(f.path)},line={f.line},col={f.column},endLine={f.end_line},"
                 f"endColumn={f.end_column},title={_escape_property(f'{f.code} {f.name}{cell}')}")
        lines.append(f"::{level} {props}::{_escape_data(f'{f.code} {f.message}')}")
    return "\n".join(lines) + ("\n" if lines else "")
