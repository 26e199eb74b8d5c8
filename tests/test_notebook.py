"""notebooks/tpu_colab.ipynb run top to bottom in a real Jupyter kernel, as a user would run
it, on this machine's CPU and in its quick mode (3 training steps of the packaged MiniLM)."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "notebooks" / "tpu_colab.ipynb"

pytestmark = pytest.mark.assets

# Appended to the notebook: reports the kernel's own results once every cell has run.
_REPORT = 'print("REPORT " + json.dumps({"on_tpu": ON_TPU, "labels": LABELS}))'


def _stdout(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("name"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(the notebook after execution, its output folder)."""
    out = tmp_path_factory.mktemp("notebook_out")
    start = tmp_path_factory.mktemp("notebook_cwd")  # not the checkout: the notebook moves there
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(_REPORT))
    env = {
        "TFHF_SOURCE": str(REPO),
        "TFHF_NOTEBOOK_QUICK": "1",
        "TFHF_NOTEBOOK_OUT": str(out),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)  # the kernel inherits this process's environment
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(start)}},
        ).execute()
    return notebook, out


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_falls_back_to_a_short_cpu_run_and_trains(executed):
    notebook, out = executed
    shown = "".join(_stdout(cell) for cell in notebook.cells)
    assert "tfhf is installed already" in shown
    assert "num_replicas_in_sync: 1" in shown
    assert "No TPU, so a short CPU run instead" in shown
    assert "epoch 1/1 step 3/3" in shown  # the run's own progress, streamed into the notebook
    assert "notebook: epoch 1 validation accuracy" in shown  # its Keras callback, in tfhf.run
    metrics = json.loads((out / "runs" / "classify_tpu" / "metrics.json").read_text())
    test = metrics["test"]
    # The quick mode's 200 of each split: six batches of 32 and a last one of 8.
    assert test["examples"] == metrics["validation"]["examples"] == 200
    # Accuracy over all 200, not a mean of per-batch figures: a count of snippets.
    right = test["accuracy"] * test["examples"]
    assert right == pytest.approx(round(right), abs=1e-6)
    assert metrics["optimizer_steps"] == 3
    config = metrics["config"]
    # The TPU flagfile's values, with the CPU and quick overrides on top.
    assert (config["mixed_precision"], config["batch_size"], config["epochs"]) == ("none", 32, 1)
    assert config["max_seq_length"] == 128 and config["checkpoint_every_steps"] == 200


def test_notebook_shows_the_export_and_classifies_with_it(executed):
    notebook, out = executed
    version_dir = out / "savedmodels" / "classify_tpu" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables").is_dir()
    metrics = json.loads((out / "runs" / "classify_tpu" / "metrics.json").read_text())
    assert metrics["export"] == str(version_dir)
    shown = "".join(_stdout(cell) for cell in notebook.cells)
    for line in ("inputs['text']", "outputs['label']", "outputs['probabilities']"):
        assert line in shown  # saved_model_cli's view of serving_default
    report = json.loads(_stdout(notebook.cells[-1]).split("REPORT ", 1)[1])
    assert report["on_tpu"] is False
    assert len(report["labels"]) == 2
    assert metrics["labels"] == ["negative", "positive"]
    assert set(report["labels"]) <= set(metrics["labels"])
