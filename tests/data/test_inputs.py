from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from aeops.data import (
    DataConfig,
    DataIngestionError,
    ImageInputs,
    InputSchemaError,
    TabularInputs,
    WindowInputs,
    fit_input_scaler,
    fit_scaler,
    input_spec_from_dict,
    make_input_spec,
    nearest_window,
    nested_array,
    split_by_kind,
    window_starts,
)


def test_windows_cover_every_row_and_end_flush() -> None:
    starts = window_starts(10, length=4, stride=3)
    assert starts.tolist() == [0, 3, 6]
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]
    covered = {s + t for s in window_starts(11, 4, 3) for t in range(4)}
    assert covered == set(range(11))


def test_a_series_shorter_than_a_window_is_named() -> None:
    with pytest.raises(
        InputSchemaError,
        match=r"series of 3 rows is shorter than one window \(data\.window\.length=5\)",
    ):
        window_starts(3, 5, 1)


def _series(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "a": np.arange(n, dtype=float), "b": np.ones(n)})


def test_window_samples_and_per_step_scores() -> None:
    spec = WindowInputs(columns=("a", "b"), length=4, stride=2)
    frame = _series(8)
    scaler = fit_input_scaler(spec, frame, "none")
    windows = spec.samples(frame, scaler)
    assert windows.shape == (3, 4, 2)  # starts 0, 2, 4
    np.testing.assert_array_equal(windows[1, :, 0], [2, 3, 4, 5])
    # Window w scores every step with w: a step's score is the mean over its windows.
    elementwise = np.stack([np.full((4, 2), float(w)) for w in range(3)])
    embeddings = np.arange(3, dtype=np.float32)[:, None]
    row_embeddings, scores = spec.row_scores(8, embeddings, elementwise)
    assert scores.tolist() == [0, 0, 0.5, 0.5, 1.5, 1.5, 2, 2]
    assert row_embeddings[:, 0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # nearest window centre


@pytest.mark.parametrize(("length", "stride"), [(1, 1), (4, 1), (5, 2), (8, 3), (32, 4), (7, 7)])
def test_each_step_takes_the_window_with_the_nearest_centre(length: int, stride: int) -> None:
    for n_rows in range(length, length + 40):
        centres = window_starts(n_rows, length, stride) + (length - 1) / 2
        brute_force = np.abs(np.arange(n_rows)[:, None] - centres[None, :]).argmin(axis=1)
        np.testing.assert_array_equal(nearest_window(n_rows, length, stride), brute_force)


def test_a_long_series_gets_its_row_embeddings_in_linear_memory() -> None:
    # A rows x windows distance matrix would take about 800 MB here.
    spec = WindowInputs(columns=("a",), length=32, stride=4)
    n_rows = 20_000
    embeddings = np.zeros((len(window_starts(n_rows, 32, 4)), 8), dtype=np.float32)
    tracemalloc.start()
    try:
        rows = spec.row_embeddings(n_rows, embeddings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows.shape == (n_rows, 8)
    assert peak < 10 * 2**20


def test_window_reconstructions_average_overlaps_in_original_units() -> None:
    spec = WindowInputs(columns=("a", "b"), length=4, stride=2)
    frame = _series(8)
    scaler = fit_input_scaler(spec, frame, "standard")
    windows = spec.samples(frame, scaler)
    back = spec.row_reconstructions(8, windows, scaler)
    np.testing.assert_allclose(back, frame[["a", "b"]].to_numpy(), atol=1e-5)


def test_images_are_reshaped_and_checked_for_size() -> None:
    spec = ImageInputs(column="image", shape=(1, 2, 3))
    frame = pd.DataFrame({"image": [np.arange(6.0), 2 * np.arange(6.0).reshape(2, 3)]})
    scaler = fit_input_scaler(spec, frame, "minmax")
    samples = spec.samples(frame, scaler)
    assert samples.shape == (2, 1, 2, 3)
    assert samples.max() == 1.0
    assert scaler.center.shape == (1,)  # one scale for all pixels
    bad = pd.DataFrame({"image": [np.arange(6.0), np.arange(4.0)]})
    with pytest.raises(InputSchemaError, match=r"row position 1 has 4 values; the model expects 6"):
        spec.samples(bad, scaler)
    # Nested lists (as JSON or Parquet give them) read like arrays; anything else is named.
    nested = pd.DataFrame({"image": [np.arange(6.0).reshape(1, 2, 3).tolist()]})
    np.testing.assert_array_equal(spec.samples(nested, scaler), samples[:1])
    for cell in (None, "abc", [[1.0, 2.0], [3.0]]):
        odd = pd.DataFrame({"image": [np.arange(6.0), cell]})
        with pytest.raises(InputSchemaError, match=r"row position 1 is not an array of numbers"):
            spec.samples(odd, scaler)
    # A null pixel (JSON null) is a missing value, which imputation fills and scoring
    # names as non-finite; it was "not an array of numbers (iteration over a 0-d array)".
    cell = [[[0.0, None, 2.0], [3.0, 4.0, 5.0]]]
    np.testing.assert_array_equal(nested_array(cell), [[[0.0, np.nan, 2.0], [3.0, 4.0, 5.0]]])
    with pytest.raises(InputSchemaError, match=r"non-finite value.* image at row position 0"):
        spec.raw_values(pd.DataFrame({"image": [cell]}))


def test_specs_round_trip_through_json_form() -> None:
    for spec in (
        TabularInputs(("a", "b")),
        ImageInputs("pixels", (3, 4, 5)),
        WindowInputs(("a",), 8, 2),
    ):
        assert input_spec_from_dict(spec.to_dict()) == spec


def test_make_input_spec_per_kind() -> None:
    series = _series().assign(timestamp=pd.date_range("2026-01-01", periods=12, freq="min"))
    spec = make_input_spec(series, DataConfig(kind="timeseries", window={"length": 4}))
    assert isinstance(spec, WindowInputs)
    assert spec.columns == ("a", "b")  # the timestamp is not a feature
    images = pd.DataFrame({"id": [1], "image": [np.zeros((5, 7))]})
    assert make_input_spec(images, DataConfig(kind="image")).sample_shape == (1, 5, 7)


def test_series_split_is_by_time_without_overlap() -> None:
    frame = _series(100)
    config = DataConfig(kind="timeseries", window={"length": 10, "stride": 5})
    train, validation, test = split_by_kind(frame, config)
    assert train["id"].max() < validation["id"].min()
    assert validation["id"].max() < test["id"].min()
    assert (len(train), len(validation), len(test)) == (50, 20, 30)


def test_series_split_names_segments_shorter_than_a_window() -> None:
    config = DataConfig(kind="timeseries", window={"length": 25, "stride": 5})
    with pytest.raises(ValueError, match=r"\['validation'\] are shorter than one window"):
        split_by_kind(_series(100), config)


def test_no_rows_map_back_to_empty_answers_of_the_right_width() -> None:
    image = ImageInputs("pixels", (1, 2, 3))
    no_pixels = np.empty((0, 1, 2, 3), np.float32)
    assert image.row_value_scores(0, no_pixels).shape == (0, 6)
    scaler = fit_scaler(np.ones((4, 6)), [f"p{i}" for i in range(6)], "none")
    assert image.row_reconstructions(0, no_pixels, scaler).shape == (0, 6)
    table = TabularInputs(("a", "b"))
    embeddings, scores = table.row_scores(0, np.empty((0, 3), np.float32), np.empty((0, 2)))
    assert embeddings.shape == (0, 3) and scores.shape == (0,) and scores.dtype == np.float64


def test_a_shaped_image_must_have_the_models_layout() -> None:
    inputs = ImageInputs(column="image", shape=(3, 4, 5))
    chw = np.arange(60.0).reshape(3, 4, 5)
    frame = pd.DataFrame({"image": [chw, chw.reshape(-1), np.moveaxis(chw, 0, -1)]})
    with pytest.raises(InputSchemaError, match=r"row position 2 has shape \[4, 5, 3\]; the mo"):
        inputs.raw_values(frame)  # as many values, but read flat its channels would mix
    np.testing.assert_array_equal(inputs.raw_values(frame.iloc[:2]), [chw.reshape(-1)] * 2)
    merged = pd.DataFrame({"image": [chw.reshape(3, 20), chw.reshape(12, 5)]})  # C x HW, CH x W
    np.testing.assert_array_equal(inputs.raw_values(merged), [chw.reshape(-1)] * 2)
    gray = ImageInputs(column="image", shape=(1, 4, 5))  # (H, W) is a one-channel image
    one = chw[0]
    cells = [one, one[..., None], one.reshape(1, 20)]  # (H, W), (H, W, 1), (1, H*W)
    np.testing.assert_array_equal(
        gray.raw_values(pd.DataFrame({"image": cells})), [one.reshape(-1)] * 3
    )
    with pytest.raises(InputSchemaError, match=r"has shape \[5, 4\]"):
        gray.raw_values(pd.DataFrame({"image": [one.T]}))


def test_a_channels_last_image_is_refused_unless_its_shape_is_set() -> None:
    hwc = np.zeros((32, 32, 3))
    frame = pd.DataFrame({"id": [0], "image": [hwc]})
    # It was read as 32 channels of 32 x 3 pixels, and a conv network trained on that.
    with pytest.raises(DataIngestionError, match=r"shape \[32, 32, 3\], which looks channels-last"):
        make_input_spec(frame, DataConfig(kind="image"))
    chw = pd.DataFrame({"id": [0], "image": [np.moveaxis(hwc, -1, 0)]})
    assert make_input_spec(chw, DataConfig(kind="image")).sample_shape == (3, 32, 32)
    stated = DataConfig(kind="image", image_shape=(32, 32, 3))  # really 32 channels
    assert make_input_spec(frame, stated).sample_shape == (32, 32, 3)
    for shape in ((2, 8, 1), (2, 5, 3), (4, 16, 3)):  # as likely channels first: kept so
        cells = pd.DataFrame({"id": [0], "image": [np.zeros(shape)]})
        assert make_input_spec(cells, DataConfig(kind="image")).sample_shape == shape
