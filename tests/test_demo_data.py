from __future__ import annotations

from pathlib import Path

from aeops.demo_data import TABULAR_DEMO_FILE, make_tabular_demo, write_demo_data

COMMITTED = Path(__file__).resolve().parents[1] / "data" / "01_raw" / TABULAR_DEMO_FILE


def test_committed_demo_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    (written,) = write_demo_data(tmp_path)
    assert written.read_bytes() == COMMITTED.read_bytes()


def test_demo_has_unique_ids_labels_and_a_small_anomaly_share() -> None:
    frame = make_tabular_demo()
    assert frame["id"].is_unique
    assert set(frame["label"]) == {0, 1}
    assert frame["label"].sum() == 30
    assert frame.shape == (387, 32)
