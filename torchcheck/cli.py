"""The `torchcheck` command: lint, rules, explain (and run, for the runtime harness)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from torchcheck import __version__

if TYPE_CHECKING:
    from rich.console import Console

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A mistake on the command line or in the config: reported in one line, exit code 2."""


def _console(output: Path | None, stream=None) -> Console:
    from rich.console import Console

    if output is not None:
        handle = open(output, "w", encoding="utf-8")  # noqa: SIM115 - closed by main()
        return Console(file=handle, color_system=None, force_terminal=False, width=120, highlight=False, soft_wrap=True)
    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    def codes(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    parser.add_argument("--select", type=codes, default=None, metavar="CODES",
                        help="rules to run, by code, code prefix (TC1) or name; replaces the config's select")
    parser.add_argument("--ignore", type=codes, default=[], metavar="CODES", help="rules to skip")
    parser.add_argument("--extend-select", type=codes, default=[], metavar="CODES", help="rules to add to the selection")


def build_parser() -> argparse.ArgumentParser:
    from torchcheck.report import FORMATS

    parser = argparse.ArgumentParser(prog="torchcheck", description="Find the PyTorch training bugs that fail silently.")
    parser.add_argument("--version", action="version", version=f"torchcheck {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lint = commands.add_parser("lint", help="lint Python files, notebooks and folders")
    lint.add_argument("paths", nargs="*", type=Path, default=None, metavar="PATH",
                      help="files (.py, .pyi, .ipynb) and folders (default: the current folder)")
    lint.add_argument("--force-exclude", action="store_true",
                      help="apply excludes to files named on the command line too, and lint nothing when none"
                           " is named (for pre-commit)")
    lint.add_argument("--format", choices=FORMATS, default="text")
    lint.add_argument("--output", type=Path, help="write the report to this file")
    _add_selection(lint)
    lint.add_argument("--config", type=Path, help="pyproject.toml to use (default: the nearest one)")
    lint.add_argument("--exit-zero", action="store_true", help="exit 0 even if there are findings")
    lint.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    lint.add_argument("--unsafe-fixes", action="store_true", help="with --fix or --diff, apply unsafe fixes too")
    lint.add_argument("--diff", action="store_true", help="show the fixes as a diff instead of writing them")
    lint.add_argument("--statistics", action="store_true", help="show the number of findings per rule")
    lint.add_argument("--jobs", "-j", type=int, default=None, help="processes to use (default: all cores)")
    lint.add_argument("--no-cache", action="store_true", help="ignore and do not write .torchcheck_cache/")
    lint.add_argument("--show-settings", action="store_true",
                      help="print the settings in effect (config file, target torch version and where it comes"
                           " from, rules) and exit")

    rules = commands.add_parser("rules", help="list every rule")
    rules.add_argument("--format", choices=("text", "json"), default="text")

    run = commands.add_parser("run", help="run a training script under the runtime checks (no code change)",
                              usage="torchcheck run [options] (SCRIPT | -m MODULE) [ARGS ...]")
    run.add_argument("--format", choices=FORMATS, default="text")
    run.add_argument("--output", type=Path, help="write the report to this file")
    _add_selection(run)
    run.add_argument("--mode", choices=("collect", "warn", "raise"), default="collect",
                     help="collect findings (default), also warn as they happen, or stop at the first")
    run.add_argument("--exit-zero", action="store_true", help="exit 0 on findings (the script's own failure still counts)")
    run.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE",
                     help="run a module as `python -m MODULE ARGS...` does (the rest of the line is its arguments)")
    run.add_argument("script", type=Path, nargs="?", help="the script to run, as `python SCRIPT ARGS...` does")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")

    explain = commands.add_parser("explain", help="show a rule's documentation")
    explain.add_argument("rule", help="code (TC101) or name (softmax-before-cross-entropy)")
    return parser


def program() -> None:
    """The `torchcheck` program, and `python -m torchcheck`: one command, then the process exits."""
    sys.exit(main(process_exits=True))


def main(argv: list[str] | None = None, *, process_exits: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "lint":
            return lint_command(args, process_exits)
        if args.command == "rules":
            return rules_command(args)
        if args.command == "explain":
            return explain_command(args)
        if args.command == "run":
            return run_command(args)
    except UsageError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print("torchcheck: interrupted", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR


def _error(message: str) -> int:
    _console(None, sys.stderr).print(f"[bold red]error[/]: {message}", markup=True, soft_wrap=True)
    return EXIT_ERROR


def resolve_config(args, start: Path):
    from torchcheck.config import ConfigError, load_config

    try:
        config = load_config(start, args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    changes = {}
    if args.select is not None:
        changes["select"] = tuple(args.select)
    changes["ignore"] = config.ignore + tuple(args.ignore)
    changes["extend_select"] = config.extend_select + tuple(args.extend_select)
    config = dataclasses.replace(config, **changes)
    selectors = (*config.select, *config.ignore, *config.extend_select)
    if selectors:  # the rules are imported only where needed: a warm run answered from the cache never is
        from torchcheck.registry import is_known_selector
    for selector in selectors:
        if not is_known_selector(selector):
            raise UsageError(f"unknown rule selector `{selector}` (see `torchcheck rules`)")
    return config


def show_settings(config, console) -> None:
    from torchcheck.registry import all_rules, in_target_range, selected_rules

    version = ".".join(map(str, config.target_version)) if config.target_version else "unknown"
    chosen = selected_rules(config)
    gated_off = [r.name for r in all_rules() if not in_target_range(r, config.target_version)]
    rows = [
        ("config", str(config.source) if config.source else "none (defaults)"),
        ("root", str(config.root)),
        ("target torch version", f"{version} ({config.target_version_source})"),
        ("rules", f"{len(chosen)} of {len(all_rules())} static rules selected"),
        ("off for this torch version", ", ".join(gated_off) or "none"),
        ("exclude", ", ".join(config.exclude)),
    ]
    for key, value in rows:
        console.print(f"{key}: {value}", markup=False, highlight=False)


def lint_command(args, process_exits: bool = False) -> int:
    from torchcheck import collector

    with collector.lint_run(process_exits):  # loading libcst and the rules is part of it: see `collector`
        from torchcheck.config import is_excluded
        from torchcheck.engine import lint_paths
        from torchcheck.report import Summary, read_sources, render
        from torchcheck.report.text import render_statistics

        if args.paths is None:
            if args.force_exclude:  # pre-commit with no staged Python file: nothing to do
                args.paths = []
            else:
                args.paths = [Path(".")]
        config = resolve_config(args, args.paths[0] if args.paths else Path("."))
        if args.show_settings:
            show_settings(config, _console(None))
            return EXIT_CLEAN
        if args.force_exclude:
            args.paths = [p for p in args.paths if not is_excluded(p, config)]
        use_cache = not args.no_cache and config.cache and not (args.fix or args.diff)
        result = lint_paths(args.paths, config, args.jobs, cache_root=config.root if use_cache else None,
                            progress=args.format in ("text", "concise") and args.output is None)
    sources = {r.path: r.source for r in result.files if r.source is not None}
    fixed = 0
    findings = result.findings
    if args.fix or args.diff:
        from torchcheck.autofix import fix_files

        outcome = fix_files(result, config, unsafe=args.unsafe_fixes, write=args.fix and not args.diff)
        fixed, findings = outcome.fixed, outcome.findings
        sources.update(outcome.sources)
        if args.diff:
            import difflib

            out = sys.stdout
            for path, (before, after) in outcome.changes.items():
                for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"):
                    out.write(line if line.endswith("\n") else line + "\n")  # a notebook cell's last line has none
            return EXIT_FINDINGS if outcome.changes and not args.exit_zero else EXIT_CLEAN
    if not result.files and args.format not in ("text", "concise"):
        _console(None, sys.stderr).print("[bold yellow]warning[/]: no Python file or notebook found: nothing was linted",
                                         markup=True)
    console = _console(args.output)
    try:
        if args.statistics:
            render_statistics(findings, console)
        else:
            render(Summary(len(result.files), findings, read_sources(findings, sources), fixed), args.format, console)
    finally:
        if args.output is not None:
            console.file.close()
    if any(f.code in ("TC001", "TC002", "TC003") for f in findings):
        return EXIT_ERROR
    if findings and not args.exit_zero:
        return EXIT_FINDINGS
    return EXIT_CLEAN


def run_command(args) -> int:
    from torchcheck.registry import is_known_selector

    for selector in (*(args.select or ()), *args.ignore):
        if not is_known_selector(selector):
            raise UsageError(f"unknown rule selector `{selector}` (see `torchcheck rules`)")
    if args.module is not None and args.script is not None:
        raise UsageError("give a script or -m MODULE, not both (options go before them)")
    if args.module is not None and not args.module:
        raise UsageError("-m needs a module name")
    if args.module is None and args.script is None:
        raise UsageError("give the script to run, or -m MODULE")
    try:
        from torchcheck.runtime.reporting import write_report
        from torchcheck.runtime.runner import TargetNotFound, find_module, run_target
    except ImportError as exc:
        raise UsageError(f"`torchcheck run` needs torch: {exc}") from None
    if args.module is not None:
        target, target_args = args.module[0], args.module[1:]
        try:
            find_module(target)
        except TargetNotFound as exc:
            raise UsageError(str(exc)) from None
    else:
        target, target_args = str(args.script), args.args
        if not args.script.is_file():
            raise UsageError(f"no such script: {args.script}")
    exit_code, run = run_target(target, target_args, args.mode, tuple(args.select or ()), tuple(args.ignore),
                                module=args.module is not None)
    gathered = write_report(run, args.output, args.format, failed=exit_code != 0)
    if exit_code:
        return exit_code
    if gathered.group is not None and gathered.group.rank != 0:
        return EXIT_CLEAN  # rank 0 fails the job on findings: a failing rank would make torchrun stop the others
    return EXIT_FINDINGS if gathered.findings and not args.exit_zero else EXIT_CLEAN


def rules_command(args) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from torchcheck.registry import catalog

    entries = catalog()
    if args.format == "json":
        data = [{
            "code": r.code, "name": r.name, "summary": r.summary, "severity": r.severity.value,
            "fix": r.fix_safety.value if r.fix_safety else None,
            "static": not _runtime_only(r), "runtime": bool(r.runtime_check),
        } for r in entries]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return EXIT_CLEAN
    table = Table(box=None, highlight=False)
    for column in ("Code", "Name", "Fix", "Runtime"):
        table.add_column(column, no_wrap=True)
    table.add_column("What it finds")
    for rule in entries:
        table.add_row(rule.code, rule.name, rule.fix_safety.value if rule.fix_safety else "",
                      "yes" if rule.runtime_check else "", rule.summary)
    Console(highlight=False).print(table)
    return EXIT_CLEAN


def _runtime_only(rule) -> bool:
    from torchcheck.rule import PseudoRule

    return isinstance(rule, PseudoRule) and rule.runtime_check


def explain_command(args) -> int:
    from rich.console import Console
    from rich.markdown import Markdown

    from torchcheck.catalog import render_markdown
    from torchcheck.registry import resolve_rule

    rule = resolve_rule(args.rule)
    if rule is None:
        return _error(f"no rule `{args.rule}` (see `torchcheck rules`)")
    console = Console(highlight=False)
    if console.is_terminal and not os.environ.get("NO_COLOR"):
        console.print(Markdown(render_markdown(rule)))
    else:
        sys.stdout.write(render_markdown(rule))
    return EXIT_CLEAN
