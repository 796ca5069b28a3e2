from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aeops.demo_data import (
    IMAGE_DEMO_FILE,
    make_image_demo,
    make_tabular_demo,
    make_timeseries_demo,
    write_demo_data,
)

RAW = Path(__file__).resolve().parents[1] / "data" / "01_raw"


def test_committed_demo_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    for written in write_demo_data(tmp_path):
        committed = RAW / written.name
        if written.suffix == ".npz":  # compressed bytes may differ across zlib builds
            with np.load(written) as new, np.load(committed) as old:
                assert sorted(new.files) == sorted(old.files)
                for name in new.files:
                    np.testing.assert_array_equal(new[name], old[name])
        elif written.suffix == ".parquet":  # the bytes name the pyarrow that wrote them
            pd.testing.assert_frame_equal(pd.read_parquet(written), pd.read_parquet(committed))
        else:
            assert written.read_bytes() == committed.read_bytes(), written.name


def test_tabular_demo_has_unique_ids_labels_and_a_small_anomaly_share() -> None:
    frame = make_tabular_demo()
    assert frame["id"].is_unique
    assert set(frame["label"]) == {0, 1}
    assert frame["label"].sum() == 30
    assert frame.shape == (387, 32)


def test_image_demo_is_zeros_with_a_few_sixes() -> None:
    demo = make_image_demo()
    assert demo["images"].shape == (198, 8, 8)
    assert demo["labels"].sum() == 20
    assert demo["images"].max() <= 16
    assert IMAGE_DEMO_FILE.endswith(".npz")


def test_series_demo_is_regular_and_labels_whole_segments() -> None:
    frame = make_timeseries_demo()
    steps = frame["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta(minutes=1)).all()
    assert 0.05 < frame["label"].mean() < 0.1
    assert list(frame.columns) == ["timestamp", "temperature", "pressure", "flow", "label"]
