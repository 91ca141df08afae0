"""notebooks/mnist.ipynb: in sync with its source, free of stale outputs, and runs top to bottom."""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

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
def test_the_notebook_runs_top_to_bottom_and_every_check_in_it_passes(mnist, tmp_path, monkeypatch):
    # `mnist` makes sure the data is in the cache first (the kernel inherits the environment, cache
    # location included) and the kernel imports this checkout's digitnet, not some other copy.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a failing cell (an assert included) raises CellExecutionError here

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= 11, "the figures did not display"
    warnings = [
        output.text
        for output in outputs
        if output.output_type == "stream" and output.name == "stderr" and "Warning" in output.text
    ]
    assert not warnings, f"the notebook printed warnings: {warnings}"
