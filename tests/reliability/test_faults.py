"""Faults: a training process killed with SIGKILL resumes to the same result, and an
unwritable output directory fails clearly without partial output."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import KedroProject, output_of

pytestmark = pytest.mark.slow

CHECKPOINTS = "--params=training.checkpoint_every=5,training.epochs=80"
LAST = Path("data/06_models/checkpoints/last.pt")
SCORES = Path("data/07_model_output/test_scores.parquet")


def test_kill_9_during_training_then_resume_gives_the_uninterrupted_result(
    tmp_path: Path,
) -> None:
    reference = KedroProject(tmp_path / "reference")
    result = reference.run(CHECKPOINTS)
    assert result.returncode == 0, output_of(result)

    interrupted = KedroProject(tmp_path / "interrupted")
    process = subprocess.Popen(
        interrupted.command(CHECKPOINTS),
        cwd=interrupted.root,
        env=interrupted.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (interrupted.root / LAST).exists():
        assert process.poll() is None, "training ended before a checkpoint was written"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (interrupted.root / SCORES).exists()  # it really died mid-training

    resumed = interrupted.run(f"{CHECKPOINTS},training.resume=true")
    assert resumed.returncode == 0, output_of(resumed)
    assert re.search(r"Resumed from \S*last\.pt after epoch \d+", resumed.stdout + resumed.stderr)
    expected = pd.read_parquet(reference.root / SCORES)
    actual = pd.read_parquet(interrupted.root / SCORES)
    np.testing.assert_array_equal(actual["id"], expected["id"])
    np.testing.assert_array_equal(actual["reconstruction_error"], expected["reconstruction_error"])


@pytest.mark.parametrize(
    ("stop", "runner", "status"),
    [
        (signal.SIGTERM, "SequentialRunner", -signal.SIGTERM),
        (signal.SIGTERM, "ThreadRunner", -signal.SIGTERM),  # ends without its nodes
        (signal.SIGINT, "SequentialRunner", 1),
    ],
)
def test_a_run_stopped_by_a_signal_is_recorded_as_killed(
    project: KedroProject, stop: signal.Signals, runner: str, status: int
) -> None:
    # Before: SIGTERM left the run RUNNING for ever, and Ctrl-C recorded it FINISHED.
    def interrupt(process: subprocess.Popen[str]) -> None:
        time.sleep(1.0)  # into the epochs
        process.send_signal(stop)

    returncode, output = project.run_until(
        f"--runner={runner}",
        "--params=training.epochs=2000,training.early_stopping.enabled=false",
        line="Running node: train_autoencoder_node",
        then=interrupt,
    )
    assert returncode == status, output[-4000:]
    (run,) = project.runs()
    assert run.info.status == "KILLED", output[-4000:]
    assert not project.client().search_registered_models()  # nothing registered


def _mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root")


def _unmount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=False)


def test_a_read_only_output_directory_fails_the_run_and_registers_nothing(
    project: KedroProject,
) -> None:
    outputs = project.root / "data/07_model_output"
    _mount_tmpfs(outputs, "ro,size=1m")
    try:
        result = project.run("--params=training.epochs=5")
    finally:
        _unmount(outputs)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "test_scores.parquet" in output
    assert "Read-only file system" in output
    assert project.client().search_registered_models() == []
    assert [run.info.status for run in project.runs()] == ["FAILED"]
    assert not (project.root / "data/08_reporting/registration.json").exists()


def test_a_full_output_directory_fails_the_batch_job_without_partial_output(
    project: KedroProject,
) -> None:
    result = project.run("--params=training.epochs=5")
    assert result.returncode == 0, output_of(result)
    demo = pd.read_csv(project.root / "data/01_raw/breast_cancer_anomalies.csv")
    big = pd.concat([demo] * 60, ignore_index=True).assign(id=lambda f: range(len(f)))
    big.to_parquet(project.root / "data/01_raw/big.parquet")
    (project.root / "conf/local/catalog.yml").write_text(
        "embed_input:\n  type: aeops.io.TableSourceDataset\n"
        "  filepath: data/01_raw/big.parquet\n"
        "embeddings:\n  type: aeops.io.BatchJobOutputDataset\n"
        "  filepath: data/full/embeddings.parquet\n"
    )
    full = project.root / "data/full"
    _mount_tmpfs(full, "size=64k")  # the embeddings of 23k rows take about 400 kB
    try:
        result = project.run("--params=embed.batch_rows=2000", pipeline="embed")
        left = sorted(p.name for p in full.iterdir())
    finally:
        _unmount(full)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "No space left on device" in output, output[-3000:]
    assert "embeddings.parquet" in output
    assert left == []  # neither the output nor a temporary part of it
    assert len(project.client().search_model_versions("name='aeops-demo'")) == 1
