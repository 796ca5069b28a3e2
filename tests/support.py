"""Helpers shared by tests that run the project as a user does (importable as ``support``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class KedroProject:
    """A private copy of the project (conf, src, demo data) run as a user runs it.

    Each copy has its own SQLite tracking store (``mlflow.db``) and ``mlruns/``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("pyproject.toml", ".telemetry"):
            shutil.copy2(PROJECT_ROOT / name, root / name)
        for env in ("base", "timeseries", "images"):
            shutil.copytree(PROJECT_ROOT / "conf" / env, root / "conf" / env)
        shutil.copy2(PROJECT_ROOT / "conf" / "logging.yml", root / "conf" / "logging.yml")
        (root / "conf" / "local").mkdir()
        # A real copy, not a link: kedro finds the package under the project's src/.
        shutil.copytree(
            PROJECT_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(PROJECT_ROOT / "data" / "01_raw", root / "data" / "01_raw")

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """The environment of a user's shell: telemetry off, no inherited MLflow settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(
            KEDRO_DISABLE_TELEMETRY="1",
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
            GX_ANALYTICS_ENABLED="false",
            COLUMNS="400",  # rich wraps tracebacks to the terminal width
            # Tools the CLIs start (uvicorn for `mlflow models serve`) come from this venv.
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        )
        env.update(extra)
        return env

    def command(self, *args: str, pipeline: str = "train") -> list[str]:
        """``kedro run --pipeline=<pipeline> <args>``."""
        kedro = Path(sys.executable).with_name("kedro")
        return [str(kedro), "run", f"--pipeline={pipeline}", *args]

    def run(
        self, *args: str, pipeline: str = "train", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the pipeline to completion, capturing its output."""
        return self.call(self.command(*args, pipeline=pipeline), env=env)

    def call(
        self, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the project, capturing its output."""
        return subprocess.run(
            command,
            cwd=self.root,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def python(self, code: str, cwd: Path | None = None) -> None:
        """Run ``code`` in a fresh interpreter, as a user's script would; require success."""
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd or self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-4000:]

    def client(self) -> MlflowClient:
        """A client of this project's SQLite store."""
        uri = f"sqlite:///{self.root / 'mlflow.db'}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def runs(self) -> list[Any]:
        """Every run of the ``aeops`` experiment, newest first (none before a run)."""
        client = self.client()
        experiment = client.get_experiment_by_name("aeops")
        return [] if experiment is None else client.search_runs([experiment.experiment_id])


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    """A finished command's stdout and stderr, for assertion messages."""
    return result.stdout[-4000:] + result.stderr[-4000:]
