from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from PIL import Image

from aeops.io import ImageDataset


def test_npz_with_labels_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(path, images=images, labels=np.array([0, 1]), ids=np.array([7, 9]))
    frame = ImageDataset(filepath=str(path)).load()
    assert frame["id"].tolist() == [7, 9]
    assert frame["label"].tolist() == [0, 1]
    assert frame["image"].iloc[1].shape == (1, 3, 4)
    np.testing.assert_array_equal(frame["image"].iloc[0][0], images[0])  # in order
    np.testing.assert_array_equal(frame["image"].iloc[1][0], images[1])
    assert frame.attrs["source"].endswith("set.npz")


def test_npz_without_images_array_is_named(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, pixels=np.zeros((2, 3, 3)))
    with pytest.raises(DatasetError, match="expected one named 'images'"):
        ImageDataset(filepath=str(path)).load()


def test_npz_arrays_of_other_lengths_are_named_with_their_lengths(tmp_path: Path) -> None:
    # pandas said only "All arrays must be of the same length".
    path = tmp_path / "set.npz"
    np.savez(path, images=np.zeros((3, 4, 4)), labels=np.array([0, 1]), ids=np.arange(3))
    with pytest.raises(DatasetError, match=r"'images' holds 3 images, but 'labels' holds 2;"):
        ImageDataset(filepath=str(path)).load()


def test_parquet_with_nested_arrays(tmp_path: Path) -> None:
    path = tmp_path / "set.parquet"
    pd.DataFrame(
        {"id": [1, 2], "image": [np.ones((2, 2)).tolist(), np.zeros((2, 2)).tolist()]}
    ).to_parquet(path)
    frame = ImageDataset(filepath=str(path)).load()
    assert frame["image"].iloc[0].shape == (2, 2)
    np.testing.assert_array_equal(frame["image"].iloc[0], np.ones((2, 2)))
    np.testing.assert_array_equal(frame["image"].iloc[1], np.zeros((2, 2)))


def test_folder_of_pngs_with_label_subfolders(tmp_path: Path) -> None:
    for label, value in (("0", 10), ("1", 200)):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((4, 5), value, dtype=np.uint8)).save(tmp_path / label / "a.png")
    frame = ImageDataset(filepath=str(tmp_path)).load()
    assert frame["id"].tolist() == ["0/a.png", "1/a.png"]
    assert frame["label"].tolist() == [0, 1]
    assert frame["image"].iloc[1].shape == (1, 4, 5)
    assert frame["image"].iloc[1].max() == 200


def test_webp_images_load_and_other_files_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for label in ("0", "1"):
        (tmp_path / label).mkdir()
    pixels = np.full((4, 5), 200, dtype=np.uint8)
    pixels[1, 2] = 7
    Image.fromarray(pixels).save(tmp_path / "0" / "a.png")
    Image.fromarray(pixels).save(tmp_path / "1" / "a.webp", lossless=True)  # stored as RGB
    (tmp_path / "README.md").write_text("digits")
    frame = ImageDataset(filepath=str(tmp_path)).load()
    assert frame["id"].tolist() == ["0/a.png", "1/a.webp"]
    for image in frame["image"]:  # gray, as its PNG: one channel
        np.testing.assert_array_equal(image, pixels[None])
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "not reading 1 file(s) that are not images by their suffix: README.md" in warning


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png is not a readable image"):
        ImageDataset(filepath=str(tmp_path)).load()


def test_palette_and_one_bit_images_load_as_pixel_values(tmp_path: Path) -> None:
    (tmp_path / "gray").mkdir()
    (tmp_path / "colour").mkdir()
    gray = np.zeros((8, 8), dtype=np.uint8)
    gray[2:6, 2:6] = 200
    Image.fromarray(gray).save(tmp_path / "gray" / "a.gif")  # a GIF is always a palette image
    Image.fromarray(gray > 0).save(tmp_path / "gray" / "c.png")  # mode "1"
    (tmp_path / "gray" / "._a.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X")  # skipped
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[:4] = (250, 10, 30)
    Image.fromarray(colour).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(
        tmp_path / "colour" / "b.png"
    )
    grays = ImageDataset(filepath=str(tmp_path / "gray")).load().set_index("id")
    assert sorted(grays.index) == ["a.gif", "c.png"]
    np.testing.assert_array_equal(grays.loc["a.gif", "image"], gray[None])  # not indices
    np.testing.assert_array_equal(grays.loc["c.png", "image"], (gray > 0)[None] * 255)
    (image,) = ImageDataset(filepath=str(tmp_path / "colour")).load()["image"]
    np.testing.assert_array_equal(image, np.moveaxis(colour, -1, 0))


def test_a_folder_mixing_colour_and_gray_palettes_loads_one_channel_count(
    tmp_path: Path,
) -> None:
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[:4] = (250, 10, 30)
    Image.fromarray(colour).save(tmp_path / "a.gif")
    gray = np.full((8, 8), 90, dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "b.gif")
    # A plain gray PNG (mode "L") too; it stopped training as one channel among three.
    Image.fromarray(gray).save(tmp_path / "0_gray.png")
    frame = ImageDataset(filepath=str(tmp_path)).load().set_index("id")
    assert [image.shape for image in frame["image"]] == [(3, 8, 8)] * 3
    for name in ("b.gif", "0_gray.png"):
        np.testing.assert_array_equal(frame.loc[name, "image"], np.stack([gray] * 3))
    # A 16-bit gray image stays gray, for validation to name, rather than mix scales.
    deep = np.full((8, 8), 60000, dtype=">u2")
    Image.frombytes("I;16B", (8, 8), deep.tobytes()).save(tmp_path / "deep.tif")
    frame = ImageDataset(filepath=str(tmp_path)).load().set_index("id")
    assert frame.loc["deep.tif", "image"].shape == (1, 8, 8)


def test_sixteen_bit_images_keep_their_values(tmp_path: Path) -> None:
    values = np.array([[0, 1000], [40000, 65535]], dtype=">u2")
    Image.frombytes("I;16B", (2, 2), values.tobytes()).save(tmp_path / "a.tif")
    (image,) = ImageDataset(filepath=str(tmp_path)).load()["image"]
    np.testing.assert_array_equal(image, values[None])
