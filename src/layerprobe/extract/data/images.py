"""Decode one image file into the 8-bit RGB picture every processor expects, plus its SHA-256.

Choices (each one changes what the model sees, so they are fixed here and nowhere else):
- The file is read once; the SHA-256 stored per sample is over exactly those bytes, and the same
  bytes are decoded, so the hash always describes the picture that was used.
- EXIF orientation is applied (``ImageOps.exif_transpose``): a photo shows upright, as in a viewer;
  a malformed EXIF block is ignored (the picture is used as stored).
- High bit depth (16-bit ``I;16*``, 32-bit ``I``, float ``F``) is scaled linearly from the image's
  own [min, max] to [0, 255]; a constant image becomes black. Medical 16-bit files usually hold
  10-12-bit data, so dividing by 65535 would leave them nearly black; min-max is a viewer's "full
  window". Trade-off: absolute intensity is not comparable across such images.
- Transparency (RGBA, LA, PA, palette with a transparent colour) is composited onto black: medical
  images have black backgrounds, and white would draw a bright frame around the anatomy.
- Palette, 1-bit, grayscale, CMYK, YCbCr and other modes use PIL's own conversion to RGB;
  grayscale is replicated into three equal channels.
- Multi-frame files (GIF, multi-page TIFF) give their first frame.
- DICOM (a ``.dcm``/``.dicom`` name, or ``DICM`` at byte 128) is decoded by
  :func:`layerprobe.extract.data.dicom.decode_dicom` (rescale, window, MONOCHROME1; its docstring has
  the choices); a multi-frame DICOM needs a frame rule (``frame=``), unlike GIF/TIFF, because its
  frames are slices of one volume, not pages.
- A missing, unreadable, truncated or corrupt file is an :class:`ExtractError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from layerprobe.errors import ExtractError
from layerprobe.extract.data.dicom import FrameRule, decode_dicom, looks_like_dicom

_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class DecodedImage(NamedTuple):
    image: Image.Image
    """The picture in mode ``RGB``, 8 bits per channel, upright."""
    sha256: str
    """SHA-256 (hex) of the file's bytes."""


def read_image(path: str | Path, *, frame: FrameRule = None) -> DecodedImage:
    """Read, hash and decode ``path`` (see the module docstring); errors name the file.

    ``frame`` picks the frame of a multi-frame DICOM (see :data:`~layerprobe.extract.data.dicom.FrameRule`).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ExtractError(f"image {path} does not exist; fix the dataset or pass --skip-bad to record it as skipped") from None
    except OSError as err:
        raise ExtractError(f"image {path} cannot be read ({err.strerror or err}); fix its permissions or pass --skip-bad") from None
    if looks_like_dicom(path.name, data):
        return DecodedImage(decode_dicom(data, str(path), frame=frame), hashlib.sha256(data).hexdigest())
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = to_rgb(opened)
    # PIL's format plugins raise many exception types on malformed data (OSError, SyntaxError,
    # ValueError, struct.error, IndexError, DecompressionBombError, ...): all mean "bad file".
    except Exception as err:  # noqa: BLE001
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExtractError(f"image {path} cannot be decoded ({reason}); replace or remove it, or pass --skip-bad to record it as skipped") from None
    return DecodedImage(image, hashlib.sha256(data).hexdigest())


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened PIL image of any mode as upright 8-bit RGB (see the module docstring)."""
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 -- a malformed EXIF block must not cost the picture itself
        pass
    if image.mode in _HIGH_DEPTH_MODES:
        return _rescale_to_8bit(image).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    x_hw = np.asarray(image, dtype=np.float64)
    x_hw = np.nan_to_num(x_hw, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(x_hw.min()), float(x_hw.max())
    if hi <= lo:
        return Image.new("L", image.size, 0)
    y_hw = np.rint((x_hw - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return Image.fromarray(y_hw)
