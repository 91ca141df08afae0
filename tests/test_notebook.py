"""notebooks/mnist.ipynb: in sync with its source, free of stale outputs, and runs top to bottom."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks" / "mnist.py"
NOTEBOOK = ROOT / "notebooks" / "mnist.ipynb"
REGENERATE = "regenerate it with `jupytext --to ipynb --update notebooks/mnist.py`"


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_the_notebook_is_generated_from_its_source_script():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert cells(committed) == cells(jupytext.read(SOURCE)), f"mnist.ipynb is out of date; {REGENERATE}"
    assert committed.metadata.kernelspec.name == "python3"


def test_the_committed_notebook_carries_no_outputs_that_could_go_stale():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    for number, cell in enumerate(committed.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"cell {number} has saved outputs; {REGENERATE} (outputs are produced by running it)"
            )


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_and_every_check_in_it_passes(mnist, docs_site):
    # The documentation build runs the notebook (myst-nb, a kernel importing this checkout's digitnet,
    # MNIST from the cache that `mnist` filled); its executed copy is checked here, so the notebook
    # runs once per test session. A failing cell (an assert included) leaves an error output or a
    # cell that never ran.
    assert docs_site.executed_notebook.is_file(), f"the notebook did not run:\n{docs_site.warnings}"
    notebook = nbformat.read(docs_site.executed_notebook, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) == len([cell for cell in jupytext.read(SOURCE).cells if cell.cell_type == "code"])
    errors = [output for cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"a cell failed: {errors[0].ename}: {errors[0].evalue}" if errors else ""
    assert all(cell.execution_count is not None for cell in code), "the notebook stopped before its end"

    outputs = [output for cell in code for output in cell.outputs]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= 11, "the figures did not display"
    warnings = [
        output.text
        for output in outputs
        if output.output_type == "stream" and output.name == "stderr" and "Warning" in output.text
    ]
    assert not warnings, f"the notebook printed warnings: {warnings}"
