"""Images as a frame with one array per row: from NPZ, Parquet or a folder of files."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from aeops.data import nested_array
from aeops.io._errors import DataFileError

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = {
    *(".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"),
    *(".pgm", ".ppm", ".pbm", ".pnm", ".tga"),
}


class ImageDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A set of images loaded as a frame: ``id``, ``image`` (a (C, H, W) array), ``label``.

    Sources, by what ``filepath`` is:

    * ``.npz``: an array ``images`` of shape (N, H, W) or (N, C, H, W), with optional
      ``labels`` (N,) and ``ids`` (N,).
    * ``.parquet``: one row per image, with an ``image`` column of arrays (nested or
      flattened; flattened images need ``data.image_shape``) and any other columns.
    * a folder of image files (PNG, JPEG, ...): each file is one image, its path
      relative to the folder is its id; files in sub-folders named by an integer
      (``0/``, ``1/``) take that integer as their label.

    Example catalog entry::

        raw_data:
          type: aeops.io.ImageDataset
          filepath: data/01_raw/digits.npz
    """

    def __init__(
        self,
        *,
        filepath: str,
        id_column: str = "id",
        image_column: str = "image",
        label_column: str = "label",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a dataset over ``filepath``; column names match the ``data`` block."""
        self._filepath = Path(filepath)
        self._columns = (id_column, image_column, label_column)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath))}

    def load(self) -> pd.DataFrame:
        """Read every image into a frame; the frame's ``attrs['source']`` is the path.

        Raises:
            DataFileError: naming the file that is missing or unreadable.
        """
        path = self._filepath
        if not path.exists():
            raise DataFileError(f"{path} does not exist")
        if path.is_dir():
            frame = self._load_folder(path)
        elif path.suffix.lower() == ".npz":
            frame = self._load_npz(path)
        elif path.suffix.lower() in {".parquet", ".pq"}:
            frame = self._load_parquet(path)
        else:
            raise DataFileError(
                f"{path} has suffix {path.suffix!r}; expected .npz, .parquet or a folder"
            )
        frame.attrs["source"] = str(PurePosixPath(path))
        return frame

    def _load_npz(self, path: Path) -> pd.DataFrame:
        id_column, image_column, label_column = self._columns
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as error:
            raise DataFileError(f"{path} is not a readable .npz file: {error}") from error
        if "images" not in arrays:
            raise DataFileError(f"{path} has arrays {sorted(arrays)}; expected one named 'images'")
        images = arrays["images"]
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4:
            raise DataFileError(
                f"{path}: 'images' has shape {list(arrays['images'].shape)}; expected "
                "(N, H, W) or (N, C, H, W)"
            )
        lengths = {name: len(arrays[name]) for name in ("ids", "labels") if name in arrays}
        if wrong := {name: n for name, n in lengths.items() if n != len(images)}:
            raise DataFileError(
                f"{path}: 'images' holds {len(images)} images, but "
                + " and ".join(f"{name!r} holds {n}" for name, n in wrong.items())
                + "; every array needs one entry per image"
            )
        columns: dict[str, Any] = {
            id_column: arrays.get("ids", np.arange(len(images))),
            image_column: list(images),
        }
        if "labels" in arrays:
            columns[label_column] = arrays["labels"]
        return pd.DataFrame(columns)

    def _load_parquet(self, path: Path) -> pd.DataFrame:
        image_column = self._columns[1]
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as error:
            raise DataFileError(f"{path} is not a readable Parquet file: {error}") from error
        if image_column not in frame.columns:
            raise DataFileError(
                f"{path} has no image column {image_column!r}; columns: {list(frame.columns)}"
            )
        frame[image_column] = [_image_cell(cell) for cell in frame[image_column]]
        return frame

    def _load_folder(self, path: Path) -> pd.DataFrame:
        from PIL import Image, UnidentifiedImageError

        id_column, image_column, label_column = self._columns
        visible = [
            p
            for p in path.rglob("*")
            # hidden files and folders (macOS "._x.png", ".thumbnails/") are no images
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
        files = sorted(p for p in visible if p.suffix.lower() in _IMAGE_SUFFIXES)
        others = sorted(str(p.relative_to(path)) for p in set(visible) - set(files))
        if others:
            logger.warning(
                "%s: not reading %d file(s) that are not images by their suffix: %s%s (images: %s)",
                path,
                len(others),
                ", ".join(others[:5]),
                ", ..." if len(others) > 5 else "",
                ", ".join(sorted(_IMAGE_SUFFIXES)),
            )
        if not files:
            raise DataFileError(f"{path} is a folder with no image files")
        ids, images, labels = [], [], []
        for file in files:
            try:
                with Image.open(file) as image:
                    array = _pixels(image)
            except (OSError, UnidentifiedImageError) as error:
                raise DataFileError(f"{file} is not a readable image: {error}") from error
            ids.append(str(PurePosixPath(file.relative_to(path))))
            images.append(array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0))
            parent = file.parent.name
            labels.append(int(parent) if file.parent != path and parent.isdigit() else None)
        # Gray images among RGB ones of the same depth load as RGB (three equal
        # channels): one channel count for the folder. A 16-bit gray among 8-bit
        # colour images stays gray, for validation to name, rather than mix scales.
        colour_depths = {image.dtype for image in images if image.shape[0] == 3}
        grays = [
            index
            for index, image in enumerate(images)
            if image.shape[0] == 1 and image.dtype in colour_depths
        ]
        for index in grays:
            images[index] = np.repeat(images[index], 3, axis=0)
        if grays:
            logger.info("%s: %d gray image(s) among RGB ones loaded as RGB", path, len(grays))
        columns: dict[str, Any] = {id_column: ids, image_column: images}
        if any(label is not None for label in labels):
            columns[label_column] = labels
        return pd.DataFrame(columns)

    def save(self, data: pd.DataFrame) -> None:
        """Images are inputs only."""
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _exists(self) -> bool:
        return self._filepath.exists()


def _pixels(image: Any) -> np.ndarray:
    """An image's pixel values, (H, W) for gray or (H, W, C).

    A palette image (every GIF, 8-bit PNGs) holds indices into its palette: those are
    looked up, to gray values when every colour used is a gray, else to RGB. A WebP
    image (which has no gray mode) whose channels are all equal is gray. A 1-bit
    image becomes 0 and 255; CMYK and other colour spaces become RGB. Any other mode
    (gray, RGB, RGBA, 16-bit and float) is read as it is.
    """
    if image.mode in ("P", "PA"):
        palette = np.asarray(image.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        used = np.unique(np.asarray(image.convert("P") if image.mode == "PA" else image))
        used = used[used < len(palette)]
        gray = len(palette) > 0 and bool((palette[used] == palette[used][:, :1]).all())
        image = image.convert("L" if gray else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif image.format == "WEBP" and image.mode == "RGB":  # WebP has no gray mode
        pixels = np.asarray(image)
        if (pixels == pixels[..., :1]).all():
            return pixels[..., 0]  # a gray image, as its PNG would load
    return np.asarray(image)


def _image_cell(cell: Any) -> Any:
    """A Parquet image cell as one array; a null or ragged cell stays as it is, for
    validation to name with its row's id rather than the load failing on it."""
    if cell is None:
        return None
    try:
        return nested_array(cell)
    except (TypeError, ValueError):
        return cell
