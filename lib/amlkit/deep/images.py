"""Image data for 05: load, version, split, encode and decode.

An image set is ``x`` (N×H×W×C, original scale) and ``y`` (N labels): scikit-learn's digits
(8×8, values 0..16) or an ``.npz`` file. The training split's maximum scales the pixels; it
travels with the model in a ``preprocessing`` dict, so serving transforms requests alike. No
TensorFlow or scikit-learn at import time: the Keras service imports this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amlkit.io import sha256_file

logger = logging.getLogger(__name__)

DIGITS = "digits"
SPLITS = ("train", "validation", "test")
PNG_SCALE = 255.0  # 8-bit images decoded from base64 are divided by this, not by the data's max


@dataclass
class ImageSplits:
    """Scaled images (float32 N×H×W×C in [0, 1]) and class indices into ``classes``, per split.

    ``preprocessing`` (JSON) is what serving needs: ``scale``, ``height``, ``width``,
    ``channels``, ``classes``, ``source``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[Any]
    preprocessing: dict[str, Any]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` of the split ``"train"``, ``"validation"`` or ``"test"``."""
        pairs = {
            "train": (self.x_train, self.y_train),
            "validation": (self.x_val, self.y_val),
            "test": (self.x_test, self.y_test),
        }
        if name not in pairs:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return pairs[name]


def _as_images(x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an image set and return it as N×H×W×C float64 and a 1-D label array."""
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{source}: x has shape {x.shape} (ndim {x.ndim}); expected N×H×W or N×H×W×C. "
            "Stack the images along the first axis."
        )
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{source}: x has dtype {x.dtype}; expected numbers (real pixel values).")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{source}: y has shape {y.shape}; expected one label per image.")
    if len(x) != len(y):
        raise ValueError(f"{source}: x has {len(x)} images but y has {len(y)} labels.")
    x = x.astype(np.float64)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=(1, 2, 3)).sum())
        raise ValueError(f"{source}: {bad} images contain NaN or infinite pixels; fix them.")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"{source}: y holds a single class ({classes.tolist()}); a classifier needs two "
            "or more."
        )
    return x, y


def load_images(source: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` of ``"digits"`` (the default) or an ``.npz`` file: float64 N×H×W×C.

    Raises FileNotFoundError for a missing file, ValueError saying what is wrong with a bad one.
    """
    if source is None or str(source) == DIGITS:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return _as_images(bunch.images, bunch.target, "digits")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"image data {str(source)!r} not found; pass 'digits' or the path to an .npz file "
            "with arrays x and y."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path.name}: missing array(s) {', '.join(missing)} (found: "
                    f"{', '.join(npz.files) or 'none'}); save with np.savez(path, x=images, "
                    "y=labels)."
                )
            x, y = npz["x"], npz["y"]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ValueError(
                f"{path.name}: holds object arrays; save x as numbers and y as numbers or "
                "fixed-width strings (no pickled objects)."
            ) from exc
        raise
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path.name} is not a readable .npz file: {exc}") from exc
    return _as_images(x, y, path.name)


def data_info(source: str | Path, x: np.ndarray, y: np.ndarray) -> dict[str, str]:
    """Return ``{dataset, version, sha256}`` of an image set, for tracking and the registry.

    The sha256 is the ``.npz`` file's, or for the digits that of the arrays' dtype, shape and
    bytes; the version is its first 12 characters.
    """
    if str(source) != DIGITS:
        sha = sha256_file(source)
        return {"dataset": Path(source).stem, "version": sha[:12], "sha256": sha}
    digest = hashlib.sha256()
    for arr in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    sha = digest.hexdigest()
    return {"dataset": DIGITS, "version": sha[:12], "sha256": sha}


def split_images(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float = 0.2,
    validation_size: float = 0.2,
    random_state: int = 42,
    source: str = DIGITS,
) -> ImageSplits:
    """Split stratified by class into train/validation/test, then scale by the train maximum.

    ``test_size`` and ``validation_size`` are shares of all images; ``source`` is recorded in
    ``preprocessing``.

    Raises:
        ValueError: fractions out of range, or a class too small to appear in every split.
    """
    if not (0 < test_size < 1 and 0 < validation_size < 1 and test_size + validation_size < 1):
        raise ValueError(
            f"test_size={test_size} and validation_size={validation_size} must each be in "
            "(0, 1) and sum to less than 1."
        )
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    if counts.min() < 3:
        small = classes[counts < 3].tolist()
        raise ValueError(
            f"classes {small} have fewer than 3 images; a stratified train/validation/test "
            "split needs at least one per split. Add images or drop those classes."
        )
    from sklearn.model_selection import train_test_split  # not needed for serving

    index = np.arange(len(y))
    try:
        rest, test = train_test_split(
            index, test_size=test_size, random_state=random_state, stratify=codes
        )
        train, val = train_test_split(
            rest,
            test_size=validation_size / (1 - test_size),
            random_state=random_state,
            stratify=codes[rest],
        )
    except ValueError as exc:
        raise ValueError(
            f"cannot split {len(y)} images of {len(classes)} classes with test_size="
            f"{test_size}, validation_size={validation_size}: {exc}. Use larger fractions or "
            "more images."
        ) from exc
    scale = float(x[train].max())
    if scale <= 0:
        raise ValueError(f"the training images' maximum is {scale}; expected a positive value.")
    if float(x.min()) < 0:
        logger.warning("images have negative values (min %s); scaled values fall below 0", x.min())
    shape = dict(zip(("height", "width", "channels"), map(int, x.shape[1:]), strict=True))
    preprocessing = {"scale": scale, **shape, "classes": classes.tolist(), "source": str(source)}
    sizes = (len(train), len(val), len(test))
    logger.info(
        "split %d images %s: train/validation/test %s; scale %s", len(y), shape, sizes, scale
    )
    x_train, x_val, x_test = ((x[part] / scale).astype(np.float32) for part in (train, val, test))
    y_train, y_val, y_test = codes[train], codes[val], codes[test]
    return ImageSplits(
        x_train, y_train, x_val, y_val, x_test, y_test, classes.tolist(), preprocessing
    )


def scale_images(x: Any, preprocessing: dict[str, Any]) -> np.ndarray:
    """Check numbers N×H×W(×C) in the original scale; return float32 N×H×W×C divided by scale.

    Raises:
        ValueError: an empty batch, non-numeric or non-finite values, or a wrong shape.
    """
    h, w, c = preprocessing["height"], preprocessing["width"], preprocessing["channels"]
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"images must be numbers in nested lists of equal lengths (N×{h}×{w} or "
            f"N×{h}×{w}×{c}); could not read them: {exc}"
        ) from exc
    if arr.size == 0 or arr.ndim == 0 or len(arr) == 0:
        raise ValueError("the batch of images is empty; send at least one image.")
    original = arr.shape
    if arr.ndim == 3 and c == 1:
        arr = arr[..., np.newaxis]
    if arr.ndim != 4 or arr.shape[1:] != (h, w, c):
        one = original in ((h, w), (h, w, c))
        hint = " (a single image? wrap it in a list)" if one else ""
        expected = f"N×{h}×{w}×{c}" + (f" or N×{h}×{w}" if c == 1 else "")
        raise ValueError(f"images have shape {original}; expected {expected}{hint}.")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinite values; send finite pixel values.")
    return (arr / preprocessing["scale"]).astype(np.float32)


def _decode_png(text: str, position: int, preprocessing: dict[str, Any]) -> np.ndarray:
    """Decode one base64 image to float32 H×W×C in [0, 1] (8-bit pixels / 255)."""
    from PIL import Image, UnidentifiedImageError

    h, w, c = preprocessing["height"], preprocessing["width"], preprocessing["channels"]
    if c not in (1, 3):
        raise ValueError(
            f"base64 images need a model with 1 or 3 channels; this one has {c}. Send nested "
            "lists of numbers instead."
        )
    body = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            f"image {position} is not valid base64 ({exc}); encode PNG bytes."
        ) from exc
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            img = opened.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / PNG_SCALE
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(
            f"image {position} decodes from base64 but is not a readable image (PNG or JPEG): {exc}"
        ) from exc
    return arr.reshape(h, w, c)


def images_to_model_input(images: Any, preprocessing: dict[str, Any]) -> np.ndarray:
    """Turn a request's batch into the model's input (float32 N×H×W×C in [0, 1]).

    ``images`` is numbers as :func:`scale_images` takes them, or a list of base64 PNG/JPEG
    strings (converted to the model's channels and H×W, 8-bit pixels divided by 255). A bad
    batch raises ValueError saying what was expected.
    """
    if isinstance(images, str | bytes):
        raise ValueError("images must be a list (a batch); wrap a single image in a list.")
    if isinstance(images, list | tuple) and len(images) == 0:
        raise ValueError("the batch of images is empty; send at least one image.")
    if isinstance(images, list | tuple) and any(isinstance(i, str) for i in images):
        kinds = sorted({type(i).__name__ for i in images})
        if kinds != ["str"]:
            raise ValueError(
                f"the batch mixes base64 strings with other values ({', '.join(kinds)}); send "
                "either all base64 images or all nested lists of numbers."
            )
        return np.stack([_decode_png(s, i, preprocessing) for i, s in enumerate(images)])
    return scale_images(images, preprocessing)


def encode_png(image: np.ndarray, scale: float) -> str:
    """Encode one image (H×W or H×W×C, original scale) as a base64 PNG string.

    Pixels become ``round(value / scale * 255)`` (``scale`` maps to white), the inverse of
    what :func:`images_to_model_input` does with base64 input.
    """
    from PIL import Image

    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    pixels = np.clip(np.rint(arr / scale * PNG_SCALE), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
