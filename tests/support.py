"""Helpers shared by tests that run the project as a user does (importable as ``support``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
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
        root.mkdir(parents=True, exist_ok=True)
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

    def run_until(
        self,
        *args: str,
        line: str,
        then: Callable[[subprocess.Popen[str]], None],
        env: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """Run the train pipeline, call ``then(process)`` once its output shows
        ``line``, and let it end: its exit status and whole output."""
        process = subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        seen = []
        for text in process.stdout:
            seen.append(text)
            if line in text:
                then(process)
                break
        output = "".join(seen) + process.communicate(timeout=600)[0]
        return process.returncode, output

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1: SQLite backend, served local artifacts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MlflowServer:
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(mlflow_cli),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'server.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
            ],
            cwd=self.folder,
            env=KedroProject.env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "server.log").open("ab"),
        )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                log = (self.folder / "server.log").read_text()[-3000:]
                raise AssertionError(f"mlflow server exited: {log}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mlflow server did not answer /health within 120 s")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
