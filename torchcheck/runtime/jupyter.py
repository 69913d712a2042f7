"""The runtime harness in Jupyter and IPython: `%load_ext torchcheck`, then

    %torchcheck on [--select CODES] [--ignore CODES] [--mode collect|warn|raise]
    %torchcheck off
    %%torchcheck [--select ...]          (one cell)

`%torchcheck on` enters one `watch()` that stays installed across cells until `%torchcheck off`;
after each cell, the findings that cell made are shown under it. `%%torchcheck` watches one cell
and shows its findings under it, also when the cell raises. The hooks are the harness's own: they
are removed on `off`, when the extension is unloaded, and when the cell of a `%%torchcheck` ends,
whatever happens in it; nothing stays installed that was not asked for."""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import linecache
import shlex
from dataclasses import replace
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from torchcheck.runtime.harness import MODES, Run, watch

USAGE = ("%torchcheck on [--select CODES] [--ignore CODES] [--mode collect|warn|raise] | %torchcheck off,"
         " or %%torchcheck [options] on the first line of a cell")


def _options(words: list[str]) -> argparse.Namespace:
    def codes(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    parser = argparse.ArgumentParser(prog="%torchcheck", add_help=False, exit_on_error=False)
    parser.add_argument("--select", type=codes, default=())
    parser.add_argument("--ignore", type=codes, default=())
    parser.add_argument("--mode", choices=MODES, default="collect")
    try:
        options, unknown = parser.parse_known_args(words)
    except (argparse.ArgumentError, ValueError) as exc:
        raise UsageError(f"{exc}; usage: {USAGE}") from None
    if unknown:
        raise UsageError(f"unknown argument {unknown[0]!r}; usage: {USAGE}")
    from torchcheck.registry import is_known_selector

    for selector in (*options.select, *options.ignore):
        if not is_known_selector(selector):
            raise UsageError(f"unknown rule selector `{selector}` (see `torchcheck rules`)")
    return options


def _start(options: argparse.Namespace) -> Run:
    run = watch(mode=options.mode, select=options.select, ignore=options.ignore)
    try:
        run.__enter__()
    except ImportError as exc:
        raise UsageError(f"the torchcheck runtime harness needs torch: {exc}") from None
    return run


class Extension:
    """The extension's state in one shell: the kernel-wide run, and what was shown of it."""

    def __init__(self, shell) -> None:
        self.shell = shell
        self.kernel_run: Run | None = None
        self.shown: dict[tuple, int] = {}  # the kernel-wide run's findings already shown, with their counts
        self.cell_reported = False  # a `%%torchcheck` cell showed this cell's findings itself

    # -- the kernel-wide run ---------------------------------------------------------------------
    def turn_on(self, options: argparse.Namespace) -> None:
        if self.kernel_run is not None:
            self.turn_off()  # new options replace the old ones
        self.kernel_run = _start(options)
        self.shown = {}

    def turn_off(self) -> None:
        run, self.kernel_run = self.kernel_run, None
        if run is None:
            return
        try:
            run.__exit__(None, None, None)
        finally:
            self.show(self._new(run))
            self.shown = {}

    def after_cell(self, result=None) -> None:
        """post_run_cell: show the findings the kernel-wide run made during this cell."""
        if self.kernel_run is None:
            self.cell_reported = False
            return
        new = self._new(self.kernel_run)
        if not self.cell_reported:
            self.show(new)
        self.cell_reported = False

    def _new(self, run: Run) -> list:
        """The run's findings that happened since they were last shown, each with how many times."""
        new = []
        for finding in run.findings:
            key = (finding.code, finding.path, finding.line, finding.module_path)
            before = self.shown.get(key, 0)
            if finding.count > before:
                new.append(replace(finding, count=finding.count - before))
                self.shown[key] = finding.count
        return new

    # -- one cell ----------------------------------------------------------------------------------
    def run_cell(self, line: str, cell: str) -> None:
        """Run a `%%torchcheck` cell's body under its own `watch()`; its findings are shown under
        it, also when it raises, and the hooks are gone when it ends."""
        options = _options(shlex.split(line))
        shell = self.shell
        header = f"%%torchcheck {line}".rstrip()
        transformed = shell.transform_cell(cell)
        number = max(shell.execution_count - 1, 0)  # run_cell counted this cell before running it
        # the body compiled one line down, so that its line numbers are the cell's
        name = shell.compile.cache(header + "\n" + transformed, number, raw_code=header + "\n" + cell)
        tree = shell.transform_ast(shell.compile.ast_parse("\n" + transformed, filename=name))
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        run = _start(options)
        try:
            with contextlib.ExitStack() as stack:
                stack.push(run.__exit__)  # entered already: exits whatever happens
                exec(shell.compile(ast.Module(tree.body, []), name, "exec"), shell.user_global_ns, shell.user_ns)
                if last is not None:  # the value of a last expression is shown, as in any cell
                    exec(shell.compile(ast.Interactive([last]), name, "single"), shell.user_global_ns, shell.user_ns)
        finally:
            self.show(run.findings)
            self.cell_reported = True

    # -- display -----------------------------------------------------------------------------------
    def show(self, findings: list) -> None:
        if findings:
            display(FindingsReport([self._located(f) for f in findings], self._sources(findings)))

    def _located(self, finding):
        label = self.cell_label(finding.path)
        return finding if label is None else replace(finding, path=label)

    def cell_label(self, path: str) -> str | None:
        """`Cell In[5]` for code that a cell compiled (as IPython's tracebacks name it), else None."""
        format_code_name = getattr(self.shell.compile, "format_code_name", None)
        if format_code_name is None:
            return None
        for candidate in (path, str(Path.cwd() / path)):
            named = format_code_name(candidate)
            if named:
                return f"{named[0]} {named[1]}"
        return None

    def _sources(self, findings: list) -> dict[str, str]:
        sources = {}
        for finding in findings:
            label = self.cell_label(finding.path) or finding.path
            for candidate in (finding.path, str(Path.cwd() / finding.path)):
                lines = linecache.getlines(candidate)
                if lines:
                    sources[label] = "".join(lines)
                    break
        return sources


class FindingsReport:
    """Findings as cell output: rich HTML in the notebook, the same text elsewhere."""

    def __init__(self, findings: list, sources: dict[str, str]) -> None:
        self.findings = findings
        self.sources = sources

    def _render(self, html: bool) -> str:
        from rich.console import Console

        from torchcheck.report import Summary, render

        console = Console(file=io.StringIO(), record=True, width=110, color_system="truecolor" if html else None,
                          force_terminal=html, force_jupyter=False, highlight=False, soft_wrap=True)
        render(Summary(1, self.findings, self.sources, kind="cell"), "text", console)
        if html:
            return console.export_html(inline_styles=True, code_format='<pre style="font-family:monospace;'
                                                                         'font-size:0.9em;line-height:1.3">{code}</pre>')
        return console.export_text().rstrip()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/plain": self._render(html=False), "text/html": self._render(html=True)}

    def __repr__(self) -> str:
        return self._render(html=False)


@magics_class
class TorchcheckMagics(Magics):
    def __init__(self, shell, extension: Extension) -> None:
        super().__init__(shell)
        self.extension = extension

    @line_cell_magic
    def torchcheck(self, line: str, cell: str | None = None):
        """Watch training with torchcheck's runtime checks: `%torchcheck on|off` for the whole
        kernel, `%%torchcheck` for one cell. Options: --select, --ignore, --mode."""
        if cell is not None:
            return self.extension.run_cell(line, cell)
        words = shlex.split(line)
        if words[:1] == ["on"]:
            self.extension.turn_on(_options(words[1:]))
        elif words == ["off"]:
            self.extension.turn_off()
        elif not words:
            state = "on" if self.extension.kernel_run is not None else "off"
            print(f"torchcheck runtime checks: {state} (usage: {USAGE})")
        else:
            raise UsageError(f"usage: {USAGE}")
        return None


_EXTENSIONS: dict[int, Extension] = {}


def load(shell) -> None:
    if id(shell) in _EXTENSIONS:
        return
    extension = _EXTENSIONS[id(shell)] = Extension(shell)
    shell.register_magics(TorchcheckMagics(shell, extension))
    shell.events.register("post_run_cell", extension.after_cell)


def unload(shell) -> None:
    """`%unload_ext torchcheck`: the kernel-wide run ends (its last findings are shown), the hooks
    and the magics are removed."""
    extension = _EXTENSIONS.pop(id(shell), None)
    if extension is None:
        return
    try:
        extension.turn_off()
    finally:
        shell.events.unregister("post_run_cell", extension.after_cell)
        for kind in ("line", "cell"):
            shell.magics_manager.magics[kind].pop("torchcheck", None)
        shell.magics_manager.registry.pop(TorchcheckMagics.__name__, None)
