"""Execute every tutorial notebook with nbclient, as a user would run it.

The notebooks are committed without outputs; this test runs them in a kernel
on this interpreter (``sys.executable``) with matplotlib's Agg backend. A cell
that raises fails the test (the notebooks also assert some of their own
results, e.g. that ``internal_batch_size`` does not change the map), and each
notebook must draw its figures. There is no time limit here: how long the
notebooks take is measured by ``benchmarks/tools/tutorial_times.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("efficientnet_lite_pytorch")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
KERNEL_NAME = "captum-igcam-tutorials"
# notebook -> figures it must draw.
NOTEBOOKS = {
    "01_getting_started.ipynb": 6,
    "02_steps_method_baseline.ipynb": 5,
    "03_evaluating_explanations.ipynb": 3,
    "04_vision_transformers.ipynb": 4,
    "05_segmentation_detection.ipynb": 3,
    "06_sanity_checks.ipynb": 2,
}


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs this interpreter with a non-interactive backend."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "captum_igcam tutorials",
        "language": "python",
        "env": {"MPLBACKEND": "Agg"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL_NAME


def test_every_tutorial_is_tested() -> None:
    assert sorted(path.name for path in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_tutorial_is_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {index} has outputs"
            assert cell.execution_count is None, f"{name}: cell {index} was run"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_tutorial_runs(name: str, kernel_name: str, tmp_path: Path) -> None:
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=None,  # no wall-clock limit: a busy machine is not a failure
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError if a cell fails

    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    # tqdm's notebook bars need ipywidgets (the notebooks extra installs it).
    assert not [
        o for o in outputs if o.output_type == "stream" and "TqdmWarning" in o.text
    ]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= NOTEBOOKS[name], f"{name}: {len(figures)} figures"
