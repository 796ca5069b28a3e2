from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io import DatasetError

from aeops.io import TabularDataset


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]})


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet"])
def test_round_trip_and_source(tmp_path: Path, frame: pd.DataFrame, name: str) -> None:
    dataset = TabularDataset(filepath=str(tmp_path / name))
    dataset.save(frame)
    loaded = dataset.load()
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)
    assert loaded.attrs["source"].endswith(name)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind
    if name.endswith(".tsv"):
        assert (tmp_path / name).read_text().splitlines()[0] == "id\tx"


def test_folder_of_parts_loads_as_one_table(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.iloc[:2].to_parquet(tmp_path / "part-0.parquet", index=False)
    frame.iloc[2:].to_csv(tmp_path / "part-1.csv", index=False)
    loaded = TabularDataset(filepath=str(tmp_path)).load()
    assert loaded["id"].tolist() == [1, 2, 3]


def test_parts_with_different_columns_are_named(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.rename(columns={"x": "y"}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DatasetError, match=r"b.csv has columns \['id', 'y'\]"):
        TabularDataset(filepath=str(tmp_path)).load()


def test_hidden_files_in_a_folder_are_not_parts(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "a.csv", index=False)
    (tmp_path / "._a.csv").write_bytes(b"\x00\x05\x16\x07 Mac OS X")  # macOS metadata
    (tmp_path / "_SUCCESS.csv").write_text("")
    assert TabularDataset(filepath=str(tmp_path)).load()["id"].tolist() == [1, 2, 3]


def test_saving_arrays_to_csv_or_to_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    images = pd.DataFrame({"id": [1], "image": [np.arange(3072.0)]})
    with pytest.raises(DatasetError, match=r"column 'image' holds arrays, which CSV cannot"):
        TabularDataset(filepath=str(tmp_path / "img.csv")).save(images)
    with pytest.raises(DatasetError, match=r"cannot save a .json file; use .csv, .tsv or .par"):
        TabularDataset(filepath=str(tmp_path / "out.json")).save(images[["id"]])
    assert list(tmp_path.iterdir()) == []
    arrow_lists = images.astype({"image": pd.ArrowDtype(pa.list_(pa.float64()))})
    later = pd.DataFrame({"cell": [1.0, np.arange(2000.0)]})  # an array after a number
    for frame in (arrow_lists, later):
        with pytest.raises(DatasetError, match=r"holds arrays, which CSV cannot hold whole"):
            TabularDataset(filepath=str(tmp_path / "img.csv")).save(frame)
    twice = pd.DataFrame([[1, 2]], columns=["a", "a"])  # duplicate names still save
    TabularDataset(filepath=str(tmp_path / "twice.csv")).save(twice)
    (tmp_path / "twice.csv").unlink()
    TabularDataset(filepath=str(tmp_path / "img.parquet")).save(images)  # whole there
    loaded = TabularDataset(filepath=str(tmp_path / "img.parquet")).load()
    np.testing.assert_array_equal(loaded["image"].iloc[0], np.arange(3072.0))


def test_empty_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match=r"empty.csv is empty \(0 bytes\)"):
        TabularDataset(filepath=str(tmp_path / "empty.csv")).load()


def test_corrupted_parquet_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DatasetError, match=r"bad\.parquet is not a readable Parquet file"):
        TabularDataset(filepath=str(tmp_path / "bad.parquet")).load()


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv does not exist"):
        TabularDataset(filepath=str(tmp_path / "nope.csv")).load()


def test_unknown_suffix_is_named(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DatasetError, match=r"suffix '\.xlsx'"):
        TabularDataset(filepath=str(tmp_path / "t.xlsx")).load()


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("this value cannot be written")


def test_a_save_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    # The last of 300,000 rows fails, after pandas has written the first chunks.
    rows = pd.DataFrame({"x": [1.5] * 299_999 + [_Unprintable()]})
    target = tmp_path / "out.csv"
    with pytest.raises(DatasetError, match="cannot be written"):
        TabularDataset(filepath=str(target)).save(rows)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_a_saved_file_has_the_usual_permissions(
    tmp_path: Path, frame: pd.DataFrame, name: str
) -> None:
    previous = os.umask(0o022)  # the common default: others may read
    try:
        TabularDataset(filepath=str(tmp_path / name)).save(frame)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644  # mkstemp gives 0o600


def test_a_repeated_column_name_is_refused_not_renamed(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,x,y,x\n1,2,3,4\n")
    with pytest.raises(DatasetError, match=r"t.csv has more than one column named 'x'"):
        TabularDataset(filepath=str(tmp_path / "t.csv")).load()
    (tmp_path / "ok.csv").write_text("id,x,x.1\n1,2,3\n")  # a name like a renamed one
    assert list(TabularDataset(filepath=str(tmp_path / "ok.csv")).load().columns) == [
        "id",
        "x",
        "x.1",
    ]
    table = pa.table([[1], [2], [3]], names=["id", "x", "x"])
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DatasetError, match=r"t.parquet has more than one column named 'x'"):
        TabularDataset(filepath=str(tmp_path / "t.parquet")).load()


def test_a_part_whose_column_holds_text_where_the_first_holds_numbers_is_named(
    tmp_path: Path,
) -> None:
    pd.DataFrame({"id": [1], "area": [271.2]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"id": [2, 3], "area": ["246.3", "n/a"]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(
        DatasetError,
        match=r"b\.parquet: column 'area' is (str|object), but in a\.parquet.* it is float64 "
        r"\(b\.parquet holds 'n/a' in row 1\)",
    ):
        TabularDataset(filepath=str(tmp_path)).load()
    pd.DataFrame({"id": [2], "area": [246]}).to_parquet(tmp_path / "b.parquet")  # int: fine
    assert TabularDataset(filepath=str(tmp_path)).load()["area"].tolist() == [271.2, 246.0]


@pytest.mark.parametrize(
    "load_args",
    [
        {},
        {"parse_dates": ["time"]},
        {"usecols": ["id", "pm2.5"]},
        {"index_col": "id"},
        {"skipfooter": 1, "engine": "python"},
    ],
)
def test_a_name_that_looks_renamed_loads_with_any_load_args(
    tmp_path: Path, load_args: dict[str, Any]
) -> None:
    path = tmp_path / "air.csv"
    path.write_text("id,time,pm2.5\n1,2026-01-01,3.5\n2,2026-01-02,4.5\n")
    frame = TabularDataset(filepath=str(path), load_args=load_args).load()
    assert "pm2.5" in frame.columns


def test_a_header_chosen_by_load_args_is_taken_as_given(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("exported by a tool\nid,v,v\n1,2,3\n")
    args = {"header": 1, "names": ["id", "v.1", "v.2"]}
    frame = TabularDataset(filepath=str(path), load_args=args).load()
    assert list(frame.columns) == ["id", "v.1", "v.2"]


def test_an_empty_column_in_one_part_does_not_count_as_numbers(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,note\n1,\n")  # read as float64 NaN
    (tmp_path / "b.csv").write_text("id,note\n2,checked by bob\n")
    assert TabularDataset(filepath=str(tmp_path)).load()["note"].tolist()[1] == "checked by bob"
