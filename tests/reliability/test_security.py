"""Security: no unpickling of untrusted files, servers on 127.0.0.1, secrets never logged."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest
import torch

from aeops.bundle import read_bundle
from support import PROJECT_ROOT, KedroProject, output_of

SOURCE = PROJECT_ROOT / "src" / "aeops"


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call of ``<anything>.<name>(...)`` or ``name(...)`` in aeops's source."""
    found = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                function = node.func
                called = function.attr if isinstance(function, ast.Attribute) else None
                if isinstance(function, ast.Name):
                    called = function.id
                if called == name:
                    found.append((path, node))
    return found


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_every_torch_load_in_aeops_is_weights_only() -> None:
    loads = [(p, c) for p, c in _calls("load") if ast.unparse(c.func).startswith("torch.")]
    assert loads, "expected the bundle and checkpoint loaders"
    for path, call in loads:
        assert _keyword(call, "weights_only") is True, f"{path}:{call.lineno}"


def test_no_pickle_based_loading_in_aeops() -> None:
    source = "\n".join(p.read_text() for p in SOURCE.rglob("*.py"))
    for forbidden in ("import pickle", "cloudpickle", "joblib", "read_pickle", "dill"):
        assert forbidden not in source, forbidden
    for path, call in _calls("load"):
        if ast.unparse(call.func) in {"np.load", "numpy.load"}:
            assert _keyword(call, "allow_pickle") is False, f"{path}:{call.lineno}"


class _Exploit:
    """Pickled, this runs ``Path(marker).touch()`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_bundle_whose_weights_hold_a_pickle_exploit_is_refused(
    tmp_path: Path, tracking_uri: str
) -> None:
    from aeops.bundle import BundleSpec, write_bundle
    from aeops.data import TabularInputs, fit_scaler
    from aeops.models import ModelConfig, build_model
    from aeops.scoring import Predictor, Threshold

    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (3,))
    scaler = fit_scaler(torch.randn(10, 3).numpy().astype("float64"), ["a", "b", "c"], "standard")
    predictor = Predictor(model, TabularInputs(("a", "b", "c")), scaler, Threshold(1.0, "x"))
    bundle = write_bundle(tmp_path / "bundle", predictor, BundleSpec(id_column="id"))
    marker = tmp_path / "exploited"
    weights = next(bundle.glob("*.pt"))
    with weights.open("wb") as handle:
        torch.save({"weight": _Exploit(marker)}, handle, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        read_bundle(bundle)
    assert not marker.exists()


def test_servers_in_conf_and_docs_bind_127_0_0_1() -> None:
    mlflow_conf = (PROJECT_ROOT / "conf" / "base" / "mlflow.yml").read_text()
    assert re.search(r'host:\s*"127\.0\.0\.1"', mlflow_conf)
    docs = [PROJECT_ROOT / "README.md", *PROJECT_ROOT.glob("docs/**/*.md")]
    commands = [
        line
        for doc in docs
        if doc.exists()
        for line in doc.read_text().splitlines()
        if re.search(r"mlflow (server|ui|models serve)|kedro viz", line)
    ]
    assert commands
    for line in commands:
        hosts = re.findall(r"--host[ =](\S+)", line)
        assert all(host == "127.0.0.1" for host in hosts), line


@pytest.mark.slow
def test_credentials_from_conf_local_and_env_never_reach_mlflow_or_logs(
    project: KedroProject,
) -> None:
    secret_password = "pa55-aeops-7f3c9e1b"
    secret_key = "AKIA-aeops-d41d8cd98f00b204"
    (project.root / "conf/local/credentials.yml").write_text(
        "mlflow_creds:\n"
        "  MLFLOW_TRACKING_USERNAME: aeops-bot\n"
        f"  MLFLOW_TRACKING_PASSWORD: {secret_password}\n"
    )
    mlflow_yml = project.root / "conf/base/mlflow.yml"
    mlflow_yml.write_text(
        mlflow_yml.read_text().replace("credentials: null", "credentials: mlflow_creds")
    )
    result = project.run("--params=training.epochs=5", env={"AWS_SECRET_ACCESS_KEY": secret_key})
    assert result.returncode == 0, output_of(result)
    output = result.stdout + result.stderr
    credentials = project.root / "conf/local/credentials.yml"
    for secret in (secret_password, secret_key):
        assert secret not in output
        for path in project.root.rglob("*"):
            if path.is_file() and path != credentials:
                assert secret.encode() not in path.read_bytes(), path
    (run,) = project.runs()
    recorded = {**run.data.params, **run.data.tags}
    assert not any(secret_password in str(v) for v in recorded.values())
