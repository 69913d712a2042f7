"""Jupyter notebooks for the linter: read with nbformat, lint the code cells as one module, map
every position back to its cell, and write fixes into the cells' sources only.

The code cells, in order, make one module (cell k's variables are cell k+1's), each cell's code
preceded by a marker comment line. IPython syntax (`%magic`, `!shell`, `x = !cmd`, `obj?`, cell
magics) becomes the opaque call IPython itself turns it into (`get_ipython().run_line_magic(...)`),
line for line, so that nothing is an error and every line keeps its number. Cells whose body is
Python under a cell magic (`%%time`, `%%capture`, ...) keep their body. A cell that is not valid
Python is reported alone (TC001, at its own line) and the other cells are linted.

Writing a fix replaces only the JSON value of the changed cells' `source`, in the style it was
written in (a string or a list of lines, the same indentation): outputs, metadata, ids, key order
and every other byte stay as they were."""
from __future__ import annotations

import ast
import bisect
import json
import re
import warnings
from dataclasses import dataclass, field, replace
from json.decoder import scanstring
from pathlib import Path

from torchcheck.types import Edit, Finding, RelatedLocation

SUFFIX = ".ipynb"
NOTEBOOK_MODULE = "__main__"  # a notebook's code runs as __main__; it is never a module of the project
_BOM = "\ufeff"
# Cell magics whose body is Python run in the user's namespace: the body is linted.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "torchcheck"})


class NotebookError(Exception):
    """The file is not a notebook torchcheck can read: the message says why and where."""


@dataclass(frozen=True)
class Cell:
    """A notebook's code cell."""

    position: int  # 1-based, counting every cell (markdown and raw too), as it is shown: `cell 7`
    id: str | None  # nbformat >= 4.5 cell id, as written in the file
    source: str  # the code as written, magics included


@dataclass
class Notebook:
    """A notebook as read from disk: its code cells and its text."""

    cells: list[Cell]  # code cells only
    major: int  # the nbformat major version on disk
    text: str  # the file's text, BOM included


def is_notebook(path: Path) -> bool:
    return path.suffix.lower() == SUFFIX


# -- reading -------------------------------------------------------------------------------------
def read_notebook(data: bytes) -> Notebook:
    """Parse and validate a notebook (any nbformat version nbformat reads); NotebookError when the
    bytes are not UTF-8, not JSON, or not a valid notebook."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(f"Cannot read notebook: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        raw = json.loads(text.removeprefix(_BOM))
    except json.JSONDecodeError as exc:
        raise NotebookError(f"Cannot read notebook: not valid JSON ({exc.msg} at line {exc.lineno},"
                            f" column {exc.colno})") from None
    except RecursionError:
        raise NotebookError("Cannot read notebook: the JSON nests too deeply") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nbformat"), int):
        raise NotebookError("Cannot read notebook: this JSON is not a Jupyter notebook (no `nbformat` version)")
    try:
        import nbformat
    except ImportError:
        raise NotebookError("Cannot read notebook: reading notebooks needs nbformat (`pip install nbformat`)") from None
    major = raw["nbformat"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns about missing cell ids; they are not needed here
            notebook = nbformat.convert(nbformat.from_dict(raw), 4) if major != 4 else nbformat.from_dict(raw)
            ids = [cell.get("id") for cell in notebook.get("cells", [])]  # before validation makes some up
            nbformat.validate(notebook)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in getattr(exc, "absolute_path", ())) or "notebook"
        message = " ".join(str(getattr(exc, "message", exc)).split())
        if len(message) > 200:
            message = message[:197] + "..."
        raise NotebookError(f"Cannot read notebook: invalid nbformat {major} ({where}: {message})") from None
    except Exception as exc:  # nbformat's conversions raise what the file's shape makes them raise
        raise NotebookError(f"Cannot read notebook: unsupported or broken nbformat {major} notebook"
                            f" ({type(exc).__name__}: {exc})") from None
    cells = [Cell(position, ids[position - 1] if isinstance(ids[position - 1], str) else None, _joined(cell.source))
             for position, cell in enumerate(notebook.cells, 1) if cell.cell_type == "code"]
    return Notebook(cells, major, text)


def _joined(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def cell_sources(path: Path) -> dict[int, str]:
    """Each code cell's source by position, for the report's excerpts; empty if unreadable."""
    try:
        return {cell.position: cell.source for cell in read_notebook(path.read_bytes()).cells}
    except (OSError, NotebookError):
        return {}


# -- IPython syntax as opaque Python -------------------------------------------------------------
_ASSIGNED_ESCAPE = re.compile(r"(?P<target>[\w.\[\], ()*]+?\s*=\s*)(?P<escape>!|%)(?P<rest>.*)$", re.S)
_MAGIC = re.compile(r"%+(?P<name>[\w.-]*)\s*(?P<args>.*)$", re.S)


class _Scanner:
    """Where a line stands in Python's logical lines: inside brackets, a string or a backslash
    continuation, or at the start of a new statement (where IPython looks for its syntax)."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote: str | None = None
        self.continued = False

    @property
    def at_statement_start(self) -> bool:
        return self.depth == 0 and self.quote is None and not self.continued

    def feed(self, line: str) -> int:
        """Consume one line; returns where its comment starts (len(line) if none)."""
        i, comment = 0, len(line)
        while i < len(line):
            char = line[i]
            if self.quote is not None:
                if char == "\\":
                    i += 2
                    continue
                if line.startswith(self.quote, i):
                    i += len(self.quote)
                    self.quote = None
                    continue
                i += 1
                continue
            if char == "#":
                comment = i
                break
            if char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(0, self.depth - 1)
            elif char in "'\"":
                self.quote = char * 3 if line.startswith(char * 3, i) else char
                i += len(self.quote)
                continue
            i += 1
        code = line[:comment].rstrip("\r\n")
        self.continued = code.endswith("\\")
        if self.quote is not None and len(self.quote) == 1 and not self.continued:
            self.quote = None  # an unterminated string: the parser will say so
        return comment


def _escape_call(text: str) -> str | None:
    """IPython's own translation of one escaped statement (without indentation), or None if the
    statement is plain Python."""
    if text.startswith("!!"):
        return f"get_ipython().getoutput({text[2:]!r})"
    if text.startswith("!"):
        return f"get_ipython().system({text[1:]!r})"
    if text.startswith("%"):
        match = _MAGIC.match(text)
        return f"get_ipython().run_line_magic({match['name']!r}, {match['args']!r})"
    if text.startswith("?"):
        return f"get_ipython().run_line_magic('pinfo', {text.lstrip('?')!r})"
    if text[:1] in ("/", ",", ";"):  # autocall escapes: `/f x` is `f(x)`
        return f"get_ipython().run_line_magic('autocall', {text!r})"
    match = _ASSIGNED_ESCAPE.match(text)
    if match is not None:
        rest = match["rest"]
        if match["escape"] == "!":
            return match["target"] + f"get_ipython().getoutput({rest!r})"
        magic = _MAGIC.match("%" + rest)
        return match["target"] + f"get_ipython().run_line_magic({magic['name']!r}, {magic['args']!r})"
    return None


@dataclass
class CellCode:
    """One code cell as the Python placed in the module."""

    cell: Cell
    python_lines: list[str]  # the cell's lines as Python, as many as the source has
    source_lines: list[str]
    opaque: list[tuple[int, int]] = field(default_factory=list)  # (0-based line, line count) of IPython syntax
    column_shift: list[int] = field(default_factory=list)  # columns IPython's dedent of an indented cell took
    error: tuple[str, int, int] | None = None  # (message, line, column) when the cell is not Python
    foreign: bool = False  # a cell magic of another language (%%bash, %%writefile, ...)
    start: int = 0  # the module line (1-based) of its first line

    @property
    def dedented(self) -> bool:
        return any(self.column_shift)


def _lines(text: str) -> list[str]:
    """Lines split at "\n" only, as in JSON notebooks' line lists, each keeping its newline."""
    return re.findall(r"[^\n]*\n|[^\n]+", text)


def to_python(cell: Cell) -> CellCode:
    """The cell's code with IPython syntax replaced by opaque calls, line for line."""
    lines = _lines(cell.source)
    code = CellCode(cell, list(lines), list(lines), column_shift=[0] * len(lines))
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return code
    header = lines[first].lstrip()
    if lines[first] == header and header.startswith("%%"):
        match = _MAGIC.match(header.rstrip("\r\n"))
        name, args = match["name"], match["args"]
        if name in PYTHON_CELL_MAGICS:
            code.python_lines[first] = f"get_ipython().run_cell_magic({name!r}, {args!r}, '')\n"
            code.opaque.append((first, 1))
            rest = CellCode(cell, lines[first + 1:], lines[first + 1:])
            _translate_lines(rest)
            code.python_lines[first + 1:] = rest.python_lines
            code.opaque.extend((line + first + 1, count) for line, count in rest.opaque)
        else:  # a cell in another language (%%bash, %%writefile, %%html, ...): one opaque statement
            body = "".join(lines[first + 1:])
            code.python_lines[first:] = ["\n"] * (len(lines) - first)
            code.python_lines[first] = f"get_ipython().run_cell_magic({name!r}, {args!r}, {body!r})\n"
            code.opaque.append((first, len(lines) - first))
            code.foreign = True
        return code
    indent = lines[first][: len(lines[first]) - len(header)]
    if indent:  # IPython runs an indented cell dedented by its first line's indentation
        for i, line in enumerate(lines):
            if line.startswith(indent):
                code.python_lines[i] = line[len(indent):]
                code.column_shift[i] = len(indent)
    _translate_lines(code)
    return code


def _translate_lines(code: CellCode) -> None:
    scanner = _Scanner()
    lines = code.python_lines
    i = 0
    while i < len(lines):
        line = lines[i]
        if scanner.at_statement_start:
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            statement = stripped.rstrip("\r\n")
            call = _escape_call(statement) if statement else None
            if call is None and statement and not statement.startswith("#"):
                probe = _Scanner()
                comment = probe.feed(statement)
                if probe.depth == 0 and probe.quote is None and statement[:comment].rstrip().endswith("?"):
                    call = f"get_ipython().run_line_magic('pinfo', {statement[:comment].rstrip().rstrip('?')!r})"
            if call is not None:
                count = 1
                while lines[i + count - 1].rstrip("\r\n").endswith("\\") and i + count < len(lines):
                    count += 1  # `!pip install a \` continues on the next line
                lines[i] = indent + call + "\n"
                for j in range(i + 1, i + count):
                    lines[j] = "\n"
                code.opaque.append((i, count))
                i += count
                continue
        scanner.feed(line)
        i += 1


# -- the module ------------------------------------------------------------------------------------
def marker(cell: Cell) -> str:
    return f"# ~~~ torchcheck notebook cell {cell.position} ~~~\n"


@dataclass
class NotebookModule:
    """The code cells as one Python module, and the way back from its positions to the cells'."""

    notebook: Notebook
    cells: list[CellCode]
    text: str

    @classmethod
    def build(cls, notebook: Notebook) -> NotebookModule:
        parts, line, codes = [], 1, []
        for cell in notebook.cells:
            code = to_python(cell)
            python = "".join(code.python_lines)
            if python.strip():
                try:
                    ast.parse(python + ("" if python.endswith("\n") else "\n"))
                except SyntaxError as exc:
                    number = min(max(exc.lineno or 1, 1), max(len(code.source_lines), 1))
                    column = (exc.offset or 1) + (code.column_shift[number - 1] if code.column_shift else 0)
                    code.error = (exc.msg, number, column)
                except (ValueError, RecursionError, MemoryError) as exc:
                    code.error = (f"{type(exc).__name__}: {exc}", 1, 1)
            if code.error is not None:
                code.python_lines = ["\n"] * len(code.python_lines)
            if code.python_lines and not code.python_lines[-1].endswith("\n"):
                code.python_lines[-1] += "\n"
            parts.append(marker(cell))
            code.start = line + 1
            parts.extend(code.python_lines)
            line += 1 + len(code.python_lines)
            codes.append(code)
        return cls(notebook, codes, "".join(parts))

    def cell_at(self, line: int) -> CellCode | None:
        """The cell holding a module line (a marker line belongs to the cell after it)."""
        index = bisect.bisect_right([code.start - 1 for code in self.cells], line) - 1
        return self.cells[index] if index >= 0 else None

    def position(self, line: int, column: int) -> tuple[CellCode, int, int] | None:
        """(cell, line in the cell, column in the cell's line), 1-based, for a module position."""
        code = self.cell_at(line)
        if code is None:
            return None
        number = max(line - code.start + 1, 1)
        if not code.source_lines:
            return code, 1, 1
        if number > len(code.source_lines):
            last = code.source_lines[-1].rstrip("\r\n")
            return code, len(code.source_lines), len(last) + 1
        original = code.source_lines[number - 1].rstrip("\r\n")
        if any(first <= number - 1 < first + count for first, count in code.opaque):
            column = min(column, len(original) + 1)
        else:
            column += code.column_shift[number - 1]
        return code, number, column

    def map_finding(self, finding: Finding, shown: str) -> Finding:
        start = self.position(finding.line, finding.column)
        if start is None:
            return finding
        code, line, column = start
        end = self.position(finding.end_line, finding.end_column)
        if end is None or end[0] is not code:
            end_line, end_column = line, len(code.source_lines[line - 1].rstrip("\r\n")) + 1 if code.source_lines else 1
        else:
            end_line, end_column = end[1], end[2]
        fix = finding.fix
        if fix is not None:
            fix = replace(fix, edits=tuple(self._edit(edit) for edit in fix.edits))
        related = tuple(self._related(r, shown) for r in finding.related)
        return replace(finding, line=line, column=column, end_line=end_line, end_column=end_column, fix=fix,
                       related=related, cell=code.cell.position, cell_id=code.cell.id)

    def _related(self, location: RelatedLocation, shown: str) -> RelatedLocation:
        if location.path != shown:
            return location
        start = self.position(location.line, location.column)
        end = self.position(location.end_line, location.end_column)
        if start is None:
            return location
        code, line, column = start
        end_line, end_column = (end[1], end[2]) if end is not None and end[0] is code else (line, column)
        return replace(location, line=line, column=column, end_line=end_line, end_column=end_column,
                       cell=code.cell.position, cell_id=code.cell.id)

    def _edit(self, edit: Edit) -> Edit:
        """An edit's offsets in its cell's source, with the cell's position."""
        start, end = self._cell_offset(edit.start), self._cell_offset(edit.end)
        if start is None or end is None or start[0] is not end[0]:
            return edit
        return Edit(start[1], end[1], edit.text, cell=start[0].cell.position)

    def _cell_offset(self, offset: int) -> tuple[CellCode, int] | None:
        line, column = _line_column(self.text, offset)
        where = self.position(line, column + 1)
        if where is None:
            return None
        code, number, column = where
        return code, sum(len(s) for s in code.source_lines[: number - 1]) + column - 1

    def syntax_errors(self, shown: str) -> list[Finding]:
        from torchcheck import registry

        rule = registry.resolve_rule("syntax-error")
        return [Finding(rule.code, rule.name, f"Cannot parse cell: {code.error[0]}", shown, code.error[1], code.error[2],
                        code.error[1], code.error[2], rule.severity, cell=code.cell.position, cell_id=code.cell.id)
                for code in self.cells if code.error is not None]

    # -- fixes ---------------------------------------------------------------------------------
    def fix_blocked(self, text: str, finding: Finding) -> str | None:
        """Why a finding's fix cannot be written into the cells of the module `text` (None when it
        can): it would touch IPython syntax, a cell's boundary, a cell that is not Python, or an
        indented cell."""
        if self.notebook.major != 4:
            return (f"fixes are written into nbformat 4 notebooks only (this one is nbformat {self.notebook.major});"
                    " upgrade it with `jupyter nbconvert --to notebook --inplace`")
        bounds = self._cell_bounds(text)
        if bounds is None:
            return "it would change a cell boundary"
        for edit in finding.fix.edits if finding.fix else ():
            inside = [(code, start, end) for code, start, end in bounds if start <= edit.start and edit.end <= end]
            if not inside:
                return "it would change a cell boundary"
            code, start, _ = inside[0]
            if code.error is not None or code.foreign:
                return "the cell is not Python"
            if code.dedented:
                return "the cell is indented as a whole"
            opaque = {code.python_lines[first] for first, _ in code.opaque}
            touched = text[text.rfind("\n", 0, edit.start) + 1: text.find("\n", edit.end) + 1 or len(text)]
            if any(line in opaque for line in _lines(touched)):
                return "it would change a line of IPython syntax"
        return None

    def _cell_bounds(self, text: str) -> list[tuple[CellCode, int, int]] | None:
        """(cell, start, end) character ranges of each cell's code in `text`, found by its markers."""
        bounds, cursor = [], 0
        starts = []
        for code in self.cells:
            at = text.find(marker(code.cell), cursor)
            if at < 0 or (at > 0 and text[at - 1] != "\n"):
                return None
            cursor = at + len(marker(code.cell))
            starts.append((code, cursor, at))
        for i, (code, start, _) in enumerate(starts):
            end = starts[i + 1][2] if i + 1 < len(starts) else len(text)
            bounds.append((code, start, end))
        return bounds

    def cell_sources(self, text: str) -> dict[int, str]:
        """The sources, as written in the notebook, of the cells that `text` (this module after
        fixes, which never touch IPython syntax) changed, by position."""
        changed = {}
        for code, start, end in self._cell_bounds(text) or ():
            python = text[start:end]
            if python == "".join(code.python_lines):
                continue
            lines = _lines(python)
            cursor = 0
            for first, count in code.opaque:  # IPython syntax back as written
                at = lines.index(code.python_lines[first], cursor)
                lines[at: at + count] = code.source_lines[first: first + count]
                cursor = at + count
            source = "".join(lines)
            if not code.cell.source.endswith("\n") and source.endswith("\n"):
                source = source[:-1]
            changed[code.cell.position] = source
        return changed


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1)


# -- linting -------------------------------------------------------------------------------------
def lint_notebook(data: bytes, path: Path, config, rules, project, shown: str):
    """A notebook's FileResult: its findings located in its cells."""
    from torchcheck.engine import error_result
    from torchcheck.linter import too_large

    try:
        notebook = read_notebook(data)
    except NotebookError as exc:
        return error_result(shown, "io-error", str(exc))
    module = NotebookModule.build(notebook)
    size = len(module.text.encode("utf-8"))
    if size > config.max_file_size * 1_000_000:
        return too_large(shown, size, config)
    result = lint_module(module, path, config, rules, project, shown)
    result.source = notebook.text if result.findings else None
    return result


def lint_module(module: NotebookModule, path: Path, config, rules, project, shown: str):
    from torchcheck.linter import lint_source

    result = lint_source(module.text.encode("utf-8"), path, config, rules, project, notebook_name(project), shown)
    result.findings = [module.map_finding(f, shown) if f.path == shown else f for f in result.findings]
    errors = module.syntax_errors(shown)
    if errors:
        result.findings.extend(errors)
        result.error = True
    return result


def notebook_name(project) -> str:
    """The module name a notebook's code is analysed under: never one of the project's modules."""
    name = NOTEBOOK_MODULE
    while name in project.files:
        name = "_" + name
    return name


# -- writing -------------------------------------------------------------------------------------
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, i: int) -> int:
    return _WHITESPACE.match(text, i).end()


def _members(text: str, i: int) -> dict[str, tuple[int, int]]:
    """A JSON object's members starting at `text[i] == "{"`: key -> (value start, value end); the
    last of duplicated keys wins, as in json.loads."""
    members = {}
    i = _skip(text, i + 1)
    if text[i] == "}":
        return members
    while True:
        key, i = scanstring(text, i + 1)
        i = _skip(text, _skip(text, i) + 1)  # past the colon
        _, end = _DECODER.raw_decode(text, i)
        members[key] = (i, end)
        i = _skip(text, end)
        if text[i] == "}":
            return members
        i = _skip(text, i + 1)


def _items(text: str, i: int) -> list[tuple[int, int]]:
    """A JSON array's items starting at `text[i] == "["`: (start, end) of each."""
    items = []
    i = _skip(text, i + 1)
    if text[i] == "]":
        return items
    while True:
        _, end = _DECODER.raw_decode(text, i)
        items.append((i, end))
        i = _skip(text, end)
        if text[i] == "]":
            return items
        i = _skip(text, i + 1)


def _encode_like(text: str, start: int, end: int, source: str, ensure_ascii: bool) -> str:
    """`source` as a JSON value in the style of the value at text[start:end]: a string stays a
    string; a list of lines keeps its layout (the indentation and separators of its items)."""
    if text[start] != "[":
        return json.dumps(source, ensure_ascii=ensure_ascii)
    lines = _lines(source)
    items = _items(text, start)
    if not lines:
        return "[]"
    if not items:
        return json.dumps(lines, ensure_ascii=ensure_ascii)
    opening = text[start + 1: items[0][0]]
    separator = text[items[0][1]: items[1][0]] if len(items) > 1 else "," + opening
    closing = text[items[-1][1]: end - 1]
    return "[" + opening + separator.join(json.dumps(line, ensure_ascii=ensure_ascii) for line in lines) + closing + "]"


def write_sources(notebook: Notebook, sources: dict[int, str]) -> str:
    """The notebook's text with the sources of the cells in `sources` (by position) replaced and
    every other byte unchanged; NotebookError if that cannot be done exactly."""
    text = notebook.text
    body_start = len(_BOM) if text.startswith(_BOM) else 0
    ensure_ascii = text[body_start:].isascii()  # a file written with non-ASCII escaped stays ASCII
    try:
        spans = _items(text, _members(text, _skip(text, body_start))["cells"][0])
        replacements = []
        for position, source in sources.items():
            start, end = _members(text, spans[position - 1][0])["source"]
            replacements.append((start, end, _encode_like(text, start, end, source, ensure_ascii)))
        for start, end, value in sorted(replacements, reverse=True):
            text = text[:start] + value + text[end:]
        exact = _only_sources_changed(notebook.text[body_start:], text[body_start:], sources)
    except (ValueError, KeyError, IndexError, TypeError):
        exact = False
    if not exact:
        raise NotebookError("the cells' sources could not be rewritten without changing anything else")
    return text


def _only_sources_changed(before: str, after: str, sources: dict[int, str]) -> bool:
    expected = json.loads(before)
    for position, source in sources.items():
        expected["cells"][position - 1]["source"] = source
    written = json.loads(after)
    for position in sources:
        written["cells"][position - 1]["source"] = _joined(written["cells"][position - 1]["source"])
    return written == expected


def fix_notebook(path: Path, config, rules, project, unsafe: bool):
    """Apply fixes to a notebook's code cells. Returns the new text (None if nothing changed), how
    many fixes were applied, the findings that remain and {position: (before, after)} of the
    changed cells."""
    from torchcheck.autofix import fix_text
    from torchcheck.engine import display_path
    from torchcheck.linter import lint_source

    notebook = read_notebook(path.read_bytes())
    module = NotebookModule.build(notebook)
    shown = display_path(path)
    name = notebook_name(project)

    def lint(text: str) -> list[Finding]:
        return lint_source(text.encode("utf-8"), path, config, rules, project, name, shown).findings

    fixed_text, count, remaining = fix_text(module.text, lint, unsafe, module.fix_blocked)
    changed = module.cell_sources(fixed_text)
    cells = [replace(cell, source=changed.get(cell.position, cell.source)) for cell in notebook.cells]
    final = NotebookModule.build(Notebook(cells, notebook.major, notebook.text))
    if final.text == fixed_text:
        findings = [final.map_finding(f, shown) if f.path == shown else f for f in remaining]
        findings += final.syntax_errors(shown)
    else:  # the fixed code reads differently as a cell (a fix wrote IPython syntax): look again
        findings = lint_module(final, path, config, rules, project, shown).findings
    if not changed:
        return None, 0, findings, {}
    before = {cell.position: cell.source for cell in notebook.cells}
    return (write_sources(notebook, changed), count, findings,
            {position: (before[position], source) for position, source in changed.items()})
