"""The layer rule of ARCHITECTURE.md: the library layers know neither Kedro nor MLflow."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["aeops.models", "aeops.training", "aeops.scoring"])
def test_a_library_layer_imports_neither_kedro_nor_mlflow(package: str) -> None:
    code = (
        f"import sys, {package}, pkgutil, importlib; "
        f"[importlib.import_module(m.name) for m in pkgutil.walk_packages("
        f"{package}.__path__, '{package}.')]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kedro', 'mlflow'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
