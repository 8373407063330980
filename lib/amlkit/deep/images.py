"""Image data for the deep-learning notebook: load, version, split, encode and decode.

An image set is an array ``x`` of shape N×H×W×C (N×H×W is taken as one channel) in its
original scale, and an array ``y`` of N labels. The default source is scikit-learn's bundled
handwritten digits (1,797 images of 8×8 pixels, values 0..16; no network); any ``.npz`` file
holding arrays ``x`` and ``y`` works the same way.

:func:`data_info` gives a set its version (the hash of the file or of the arrays) for tracking
and the registry. Scaling divides by the training split's maximum so values fall in [0, 1].
The scale, the image shape and the class labels are kept in a small ``preprocessing`` dict
that travels with the model, so serving applies exactly the same transformation
(:func:`scale_images`, :func:`images_to_model_input`). This module imports neither TensorFlow
nor scikit-learn at import time: the Keras service imports it to decode requests.
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
    """Scaled images (float32, N×H×W×C in [0, 1]) and class indices for the three splits.

    Attributes:
        x_train: training images. ``y_train`` holds their class indices into ``classes``.
        x_val: validation images (early stopping and the learning-rate schedule watch them).
        x_test: test images, held out until evaluation.
        classes: the sorted original labels; class index ``i`` means ``classes[i]``.
        preprocessing: what serving needs: ``scale``, ``height``, ``width``, ``channels``,
            ``classes``, ``source``. JSON-serialisable.
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
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{source}: x has dtype {x.dtype}; expected numbers (pixel values).")
    if np.iscomplexobj(x):
        raise ValueError(f"{source}: x has complex dtype {x.dtype}; expected real pixel values.")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(
            f"{source}: y has shape {y.shape}; expected one label per image (shape (N,))."
        )
    if len(x) != len(y):
        raise ValueError(
            f"{source}: x has {len(x)} images but y has {len(y)} labels; they must match."
        )
    if y.dtype == object:
        raise ValueError(f"{source}: y has dtype object; save labels as numbers or strings.")
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
    """Load an image classification set in its original scale.

    Args:
        source: ``None`` or ``"digits"`` for scikit-learn's bundled digits (8×8, values
            0..16), or the path to an ``.npz`` file with arrays ``x`` (N×H×W or N×H×W×C,
            numbers) and ``y`` (N labels, numbers or strings).

    Returns:
        ``(x, y)``: ``x`` as float64 N×H×W×C, ``y`` as a 1-D array.

    Raises:
        FileNotFoundError: the ``.npz`` file does not exist.
        ValueError: the file lacks ``x`` or ``y``, lengths differ, ``x`` has the wrong number
            of dimensions or is not numeric, or ``y`` holds a single class.
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

    Args:
        source: ``"digits"`` or the ``.npz`` path the images were loaded from.
        x: the images as loaded (:func:`load_images`).
        y: their labels.

    Returns:
        ``dataset`` is ``"digits"`` or the file's stem; ``sha256`` is that of the ``.npz``
        file's bytes, or for the digits of the arrays' dtype, shape and bytes; ``version`` is
        its first 12 characters.
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

    Args:
        x: images N×H×W×C in their original scale (from :func:`load_images`).
        y: N labels.
        test_size: fraction of all images held out for the test split.
        validation_size: fraction of all images used for validation.
        random_state: seed of the split.
        source: a name for the data, recorded in ``preprocessing``.

    Returns:
        The scaled splits with their ``preprocessing`` record.

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
    _, height, width, channels = x.shape
    preprocessing = {
        "scale": scale,
        "height": int(height),
        "width": int(width),
        "channels": int(channels),
        "classes": classes.tolist(),
        "source": str(source),
    }
    logger.info(
        "split %d images %s: train %d, validation %d, test %d; scale %s",
        len(y),
        x.shape[1:],
        len(train),
        len(val),
        len(test),
        scale,
    )
    return ImageSplits(
        x_train=(x[train] / scale).astype(np.float32),
        y_train=codes[train],
        x_val=(x[val] / scale).astype(np.float32),
        y_val=codes[val],
        x_test=(x[test] / scale).astype(np.float32),
        y_test=codes[test],
        classes=classes.tolist(),
        preprocessing=preprocessing,
    )


def scale_images(x: Any, preprocessing: dict[str, Any]) -> np.ndarray:
    """Check numeric images in their original scale and scale them for the model.

    Args:
        x: array-like N×H×W (one channel) or N×H×W×C matching ``preprocessing``.
        preprocessing: the record from :class:`ImageSplits` (``scale``, ``height``, ...).

    Returns:
        float32 N×H×W×C divided by ``preprocessing["scale"]``.

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
        with Image.open(io.BytesIO(raw)) as img:
            img = img.convert("L" if c == 1 else "RGB")
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

    Args:
        images: nested lists or an array (N×H×W or N×H×W×C numbers in the original scale,
            divided by ``preprocessing["scale"]``), or a list of base64-encoded PNG/JPEG
            strings (converted to grayscale or RGB to match the model, resized to its H×W,
            8-bit pixels divided by 255).
        preprocessing: the record saved with the model.

    Returns:
        The scaled batch.

    Raises:
        ValueError: an empty batch, a mix of strings and numbers, bad base64, an unreadable
            image, non-numeric values or a wrong shape.
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

    Pixels are mapped to 8 bits as ``round(value / scale * 255)``, the inverse of what
    :func:`images_to_model_input` does with base64 input.

    Args:
        image: one image in its original scale.
        scale: the value that maps to white (``preprocessing["scale"]``).

    Returns:
        The base64 text of the PNG file.
    """
    from PIL import Image

    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    pixels = np.clip(np.rint(arr / scale * PNG_SCALE), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
