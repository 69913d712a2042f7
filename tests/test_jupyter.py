"""`%load_ext torchcheck` in a real Jupyter kernel (nbclient + ipykernel): findings under the cell
that made them, nothing left installed after `off` or a failing cell, nothing on clean training.
Both notebooks run at once, one kernel each."""
import asyncio
import shutil
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("torch")
import nbformat  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "notebooks"
NAMES = ("watch_training_buggy", "watch_training_clean")


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    folder = tmp_path_factory.mktemp("kernels")
    notebooks = {}
    for name in NAMES:
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", folder)
        notebooks[name] = nbformat.read(folder / f"{name}.ipynb", as_version=4)

    async def execute_all() -> None:
        clients = [nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                           resources={"metadata": {"path": str(folder)}})
                   for nb in notebooks.values()]
        await asyncio.gather(*(client.async_execute() for client in clients))

    asyncio.run(execute_all())
    return notebooks


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def shown(cell) -> str:
    """What the cell showed: streams, rich outputs' plain text, errors."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
        else:
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_findings_appear_under_the_cell_that_made_them(executed):
    cells = code_cells(executed["watch_training_buggy"])
    kernel_wide, one_cell, failing, unloading, after = cells[3], cells[5], cells[6], cells[7], cells[8]
    text = shown(kernel_wide)
    assert "TC201" in text and "missing-zero-grad" not in shown(cells[2])
    assert f"--> Cell In[{kernel_wide.execution_count}]:4:5" in text  # the cell and the line
    assert "4 |     optimizer.step()" in text
    (report,) = [o for o in kernel_wide.outputs if o.output_type == "display_data"]
    assert "TC201" in report.data["text/html"]  # rich output in the notebook

    text = shown(one_cell)
    assert f"--> Cell In[{one_cell.execution_count}]:5:5" in text  # %%torchcheck counts the cell's own lines
    assert "torchcheck: 1 finding while this cell ran." in text
    assert "'loss " in text  # the cell's last value is still shown

    assert shown(failing) == "RuntimeError: a cell that fails"
    assert not unloading.outputs
    assert not after.outputs  # its assert held: nothing installed after `off`, the failing cell, the unload


def test_clean_training_shows_no_finding(executed):
    for cell in code_cells(executed["watch_training_clean"]):
        text = shown(cell)
        assert "torchcheck:" not in text and "TC2" not in text, text
    assert all(not c.outputs for c in code_cells(executed["watch_training_clean"])[:4])
