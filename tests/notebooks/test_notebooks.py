"""The notebooks in notebooks/ run top to bottom, as a user runs them, against real runs.

One project copy trains two model kinds and embeds the demo data; each notebook then
executes cell by cell in a Jupyter kernel (nbclient) started in the copy's
``notebooks/`` folder. The kernel is this interpreter, whatever kernels the machine
has installed, and sees a user's environment (telemetry off, no inherited MLflow
settings).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import run_sync

from support import KedroProject, output_of

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "aeops-demo"
EXPLORE = "01_explore_a_run.ipynb"
COMPARE = "02_compare_models.ipynb"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """The notebooks' ``python3`` kernel, pinned to this interpreter (and its venv)."""
    folder = tmp_path_factory.mktemp("kernels")
    (folder / "python3").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (aeops tests)",
        "language": "python",
    }
    (folder / "python3" / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(folder)])


def project_with_notebooks(root: Path) -> KedroProject:
    project = KedroProject(root)
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks")
    return project


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> KedroProject:
    """A project copy with a vanilla and a VAE training run, and the champion's embeddings."""
    project = project_with_notebooks(tmp_path_factory.mktemp("project"))
    for args, pipeline in [
        (["--params=training.epochs=30"], "train"),
        (["--params=model.kind=vae,training.epochs=30"], "train"),
        ([], "embed"),
    ]:
        result = project.run(*args, pipeline=pipeline)
        assert result.returncode == 0, output_of(result)
    return project


def execute(project: KedroProject, name: str, kernels: KernelSpecManager) -> nbformat.NotebookNode:
    """Run every cell of ``notebooks/<name>`` in a fresh kernel; raise on a failing cell."""
    folder = project.root / "notebooks"
    notebook = nbformat.read(folder / name, as_version=4)
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernels)
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    try:
        client.execute(env=KedroProject.env())
    finally:  # nbclient leaves a kernel it did not create running
        if run_sync(manager.is_alive)():
            run_sync(manager.shutdown_kernel)(now=True)
    return notebook


def outputs(notebook: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    """The outputs of the one cell tagged ``tag``."""
    (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    return list(cell.outputs)


def text(cell_outputs: list[nbformat.NotebookNode]) -> str:
    """Printed and displayed text of some outputs, without rich's colour codes."""
    parts = [o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell_outputs]
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


def has_figure(cell_outputs: list[nbformat.NotebookNode]) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell_outputs)


def test_committed_notebooks_have_no_outputs_and_a_python3_kernel() -> None:
    for name in (EXPLORE, COMPARE):
        notebook = nbformat.read(PROJECT_ROOT / "notebooks" / name, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3", name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (name, cell.source)


def test_explore_a_run_plots_the_latent_space_and_the_errors_of_the_last_run(
    trained: KedroProject, kernels: KernelSpecManager
) -> None:
    notebook = execute(trained, EXPLORE, kernels)
    assert has_figure(outputs(notebook, "latent-space"))
    assert has_figure(outputs(notebook, "error-histogram"))
    registration = json.loads((trained.root / "data/08_reporting/registration.json").read_text())
    shown = text(outputs(notebook, "registered-version"))
    assert f"models:/{MODEL_NAME}/{registration['version']} " in shown
    assert "model.kind=vae" in shown  # the last train run wrote test_scores
    # The notebook read the project's store, not a new one next to itself.
    assert not (trained.root / "notebooks" / "mlflow.db").exists()


def test_compare_models_tables_both_kinds_and_names_the_champion(
    trained: KedroProject, kernels: KernelSpecManager
) -> None:
    notebook = execute(trained, COMPARE, kernels)
    table = text(outputs(notebook, "runs-table"))
    assert re.search(r"\bvanilla\b", table) and re.search(r"\bvae\b", table), table
    champion = trained.client().get_model_version_by_alias(MODEL_NAME, "champion")
    registry = text(outputs(notebook, "registry"))
    assert re.search(rf"'champion': '?{champion.version}\b", registry), registry
    assert has_figure(outputs(notebook, "metrics-by-kind"))


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (EXPLORE, r"embeddings\.parquet does not exist: run the pipeline that writes it"),
        (COMPARE, r"no finished train run in experiment 'aeops'"),
    ],
)
def test_a_notebook_fails_naming_what_is_missing_without_runs(
    tmp_path: Path, kernels: KernelSpecManager, name: str, error: str
) -> None:
    project = project_with_notebooks(tmp_path)
    with pytest.raises(CellExecutionError) as failure:
        execute(project, name, kernels)
    assert re.search(error, failure.value.evalue), failure.value.evalue
