"""Decode one DICOM file (``.dcm``) into the 8-bit RGB picture every processor expects.

The display pipeline is the one the standard defines for a viewer (PS3.3 C.11, PS3.4 N.2):
stored values -> Modality LUT -> VOI LUT -> Presentation (MONOCHROME1 inversion) -> 8 bits. Choices:

- Reading: ``pydicom.dcmread`` on the bytes :func:`~layerprobe.extract.images.read_image` already
  read (and hashed). ``force=True`` is used only when the normal read fails for want of the
  128-byte preamble and ``DICM`` marker: old exports (ACR-NEMA style) omit them. A forced read
  accepts almost any bytes, so it then must find Rows, Columns and Pixel Data, or the file is
  "not DICOM". Such a file has no Transfer Syntax UID; it is taken from the encoding pydicom
  detected (implicit/explicit VR, endianness), which only native (uncompressed) data can have.
- Pixels: pydicom's own decoders (``pydicom.pixels``; RLE and deflate built in, JPEG and JPEG 2000
  via Pillow, JPEG-LS and others via pylibjpeg / pyjpegls / gdcm where installed). A compressed
  file whose decoder is missing is an error that names the packages that would decode it.
- Frames: a multi-frame file is an error naming the file unless a :data:`FrameRule` is chosen;
  only the chosen frame is decoded. Single-frame files ignore the rule. Enhanced multi-frame
  files keep rescale and window per frame in functional groups; the chosen frame's values
  (per-frame first, then shared) are used.
- Grayscale (MONOCHROME1/2): everything is float64 from the stored integers to the last step.
  Modality LUT: the Modality LUT Sequence, else Rescale Slope/Intercept (``apply_modality_lut``),
  so CT values are Hounsfield units. VOI: the file's VOI LUT Sequence if present (pydicom's
  ``apply_voi_lut`` preference), else Window Center/Width with its VOI LUT Function (LINEAR,
  LINEAR_EXACT, SIGMOID); the first view when several are given, as a viewer opens them. The VOI
  output range (the LUT's bit depth, or pydicom's window output range) maps to [0, 1]. With
  neither, the modality values' own [min, max] maps to [0, 1] (the "full window", as for 16-bit
  PNG in images.py); a constant image is 0. MONOCHROME1 (0 = white) is inverted after the
  window, as the standard orders it, so bone is white in both kinds.
- Colour: RGB is used as stored; YBR_FULL / YBR_FULL_422 are converted to RGB
  (``convert_color_space``; pydicom's decoders usually do it already, JPEG 2000 YBR_RCT/ICT too);
  PALETTE COLOR goes through its colour LUT. Colour data above 8 bits is scaled from its full
  stored range (2**BitsStored - 1, or the palette LUT's depth). Rescale and windows do not apply
  to colour data (the standard defines them for grayscale only). ICC profiles are ignored.
- The single conversion to 8 bits is ``rint(unit * 255)``; grayscale is replicated into three
  channels.
- Every failure (not DICOM, no pixel data, a missing decoder, truncated or corrupt data, an invalid
  window) is one-line :class:`ExtractError` naming the file and what to do.

pydicom's own warnings (excess padding, odd VRs) go to the warnings system, not to errors.
pydicom is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from PIL import Image

from layerprobe.errors import ExtractError
from layerprobe.extract.data.files import DICOM_SUFFIXES

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

FrameWord = Literal["first", "middle"]
FrameRule = FrameWord | int | None
"""Which frame of a multi-frame file to use: ``None`` (default) refuses multi-frame files with an
error naming the file; ``"first"`` is frame 0; ``"middle"`` is frame ``n_frames // 2`` (the centre
slice of a volume, usually the most informative); an ``int`` is a 0-based index, negative counting
from the end as in Python. Single-frame files ignore the rule."""


_FRAME_WORDS: tuple[str, ...] = get_args(FrameWord)
_SKIP = "replace or remove it, or pass --skip-bad to record it as skipped"


def looks_like_dicom(name: str, data: bytes) -> bool:
    """Whether a file is DICOM: a ``.dcm``/``.dicom`` name (any case) or ``DICM`` at byte 128."""
    return name.lower().endswith(tuple(DICOM_SUFFIXES)) or data[128:132] == b"DICM"


def parse_frame_rule(text: str) -> FrameRule:
    """A command-line value as a :data:`FrameRule`: ``first``, ``middle`` or an integer."""
    if text in _FRAME_WORDS:
        return text  # type: ignore[return-value]
    try:
        return int(text)
    except ValueError:
        raise ExtractError(f"frame rule {text!r} is not 'first', 'middle' or a frame index (0-based, negative from the end)") from None


def decode_dicom(data: bytes, where: str, *, frame: FrameRule = None) -> Image.Image:
    """The DICOM file ``data`` (named ``where`` in errors) as 8-bit RGB; see the module docstring."""
    if not (frame is None or frame in _FRAME_WORDS or (isinstance(frame, int) and not isinstance(frame, bool))):
        raise ExtractError(f"frame rule {frame!r} is not None, 'first', 'middle' or a frame index")
    ds = _read_dataset(data, where)
    from pydicom.pixels.utils import get_nr_frames

    try:
        n_frames = int(get_nr_frames(ds, warn=False))
    except (TypeError, ValueError):
        raise ExtractError(f"image {where} has an invalid Number of Frames {ds.get('NumberOfFrames')!r}; {_SKIP}") from None
    index = _frame_index(n_frames, frame, where)
    pixels, photometric = _decode_pixels(ds, index, where)
    try:
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            gray_hw = _gray_to_unit(pixels, _frame_view(ds, index), invert=photometric == "MONOCHROME1")
            unit_hwc = np.repeat(gray_hw[..., None], 3, axis=-1)
        else:
            unit_hwc = _color_to_unit(pixels, ds, photometric, where)
    except ExtractError:
        raise
    # pydicom raises ValueError/NotImplementedError/AttributeError/KeyError on invalid LUT or window tags.
    except Exception as err:  # noqa: BLE001
        raise ExtractError(f"image {where} (DICOM) has unusable LUT or window tags ({_one_line(err)}); {_SKIP}") from None
    return Image.fromarray(np.rint(np.clip(unit_hwc, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")


def _read_dataset(data: bytes, where: str) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            forced = False
        except InvalidDicomError:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            forced = True
    # pydicom's parser raises many types on malformed bytes (struct.error, ValueError, EOFError, ...).
    except Exception as err:  # noqa: BLE001
        raise ExtractError(f"image {where} cannot be parsed as DICOM ({_one_line(err)}); {_SKIP}") from None
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if forced and not (has_pixels and "Rows" in ds and "Columns" in ds):
        raise ExtractError(
            f"image {where} is not a DICOM image (no 'DICM' marker at byte 128, and read without one it has no "
            f"Rows, Columns and Pixel Data); {_SKIP}"
        )
    if not has_pixels:
        what = ds.get("Modality") or "no Modality"
        raise ExtractError(
            f"image {where} is DICOM but has no pixel data ({what}: a report, RT plan or other non-image object, "
            f"or a file cut short); {_SKIP}"
        )
    return ds


def _frame_index(n_frames: int, frame: FrameRule, where: str) -> int:
    if n_frames == 1:
        return 0
    if frame is None:
        raise ExtractError(
            f"image {where} is a multi-frame DICOM ({n_frames} frames); choose a frame with --dicom-frame first|middle|N "
            "(frame= in Python; N is 0-based) or convert it to single-frame files"
        )
    if frame == "first":
        return 0
    if frame == "middle":
        return n_frames // 2
    if not -n_frames <= frame < n_frames:  # type: ignore[operator]
        raise ExtractError(f"image {where} has {n_frames} frames, so frame index {frame} does not exist; pick one in [{-n_frames}, {n_frames - 1}]")
    return frame % n_frames  # type: ignore[operator]


def _decode_pixels(ds: Dataset, index: int, where: str) -> tuple[np.ndarray, str]:
    """One frame's decoded values (rows, cols[, samples]) and its photometric interpretation after decoding."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import as_pixel_options
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not tsyntax:  # no file meta (a forced read): native data in the encoding pydicom detected
        implicit, little = ds.original_encoding
        tsyntax = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        if meta is None:
            ds.file_meta = meta = FileMetaDataset()
        meta.TransferSyntaxUID = tsyntax
    tsyntax = UID(tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise ExtractError(
            f"image {where} uses transfer syntax {tsyntax.name or tsyntax} ({tsyntax}), which pydicom cannot decode; "
            f"convert it (e.g. gdcmconv --raw or dcmdjpeg) or {_SKIP}"
        ) from None
    if not decoder.is_available:
        needs = " | ".join(d.split(" - requires ", 1)[-1] for d in decoder.missing_dependencies)
        raise ExtractError(f"image {where} is {tsyntax.name}-compressed and no installed package decodes it; install one of: {needs}")
    try:
        pixels, props = decoder.as_array(ds, index=index, validate=True, as_rgb=True, **as_pixel_options(ds))
    # Decoders raise ValueError (length mismatch), RuntimeError (every plugin failed), and others.
    except Exception as err:  # noqa: BLE001
        raise ExtractError(f"image {where} (DICOM) pixel data cannot be decoded ({_one_line(err)}); {_SKIP}") from None
    photometric = props.get("photometric_interpretation", ds.get("PhotometricInterpretation", ""))
    return pixels, str(getattr(photometric, "value", photometric))  # pydicom may give a str Enum


def _frame_view(ds: Dataset, index: int) -> Dataset:
    """``ds`` with the frame's functional-group rescale and window at top level (enhanced multi-frame)."""
    # Per-frame values take precedence over shared ones; top-level tags (if any) over both.
    groups = []
    for keyword, at in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(keyword) or ()
        if len(items) > at:
            groups.append(items[at])
    if not groups:
        return ds
    from pydicom.dataset import Dataset as _Dataset

    view = _Dataset()
    view.update(ds)  # shallow: the elements are shared, nothing is copied
    view.file_meta = ds.file_meta
    for macro in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
        item = next((g[macro][0] for g in groups if len(g.get(macro) or ()) > 0), None)
        for elem in item or ():
            if elem.keyword not in view:
                view[elem.tag] = elem
    return view


def _gray_to_unit(stored_hw: np.ndarray, ds: Dataset, *, invert: bool) -> np.ndarray:
    """Modality LUT, VOI LUT or window, then [0, 1] (1 = white), all in float64."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values_hw = np.asarray(apply_modality_lut(stored_hw, ds), dtype=np.float64)
    values_hw = np.nan_to_num(values_hw, nan=0.0, posinf=0.0, neginf=0.0)
    # apply_voi_lut's own preference (a VOI LUT over a window), spelled out to know the output range.
    lut = (ds.get("VOILUTSequence") or [None])[0]
    if lut is not None and lut.get("LUTDescriptor") is not None and lut.get("LUTData") is not None:
        # A LUT is indexed by integers: round the (possibly rescaled) modality values first.
        out_hw = apply_voi(np.rint(values_hw).astype(np.int64), ds, 0).astype(np.float64)
        lo, hi = 0.0, float(2 ** int(lut.LUTDescriptor[2]) - 1)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        out_hw = apply_windowing(values_hw, ds, 0)
        lo, hi = _window_output_range(ds)
    else:
        out_hw = values_hw
        lo, hi = float(values_hw.min()), float(values_hw.max())
    unit_hw = np.zeros_like(out_hw) if hi == lo else np.clip((out_hw - lo) / (hi - lo), 0.0, 1.0)
    return 1.0 - unit_hw if invert else unit_hw


def _window_output_range(ds: Dataset) -> tuple[float, float]:
    """The [y_min, y_max] that pydicom's ``apply_windowing`` maps a window onto (its own rule)."""
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif ds.PixelRepresentation == 0:
        lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        lo, hi = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi


def _color_to_unit(pixels: np.ndarray, ds: Dataset, photometric: str, where: str) -> np.ndarray:
    """Colour pixels (rows, cols, 3) or palette indices (rows, cols) as RGB in [0, 1]."""
    from pydicom.pixels import apply_color_lut, convert_color_space

    if photometric == "PALETTE COLOR":
        rgb_hwc = apply_color_lut(pixels, ds)
        n_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    elif photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        rgb_hwc = pixels if photometric == "RGB" else convert_color_space(pixels, photometric, "RGB")
        n_bits = int(ds.BitsStored)
    else:
        raise ExtractError(
            f"image {where} has photometric interpretation {photometric!r}, which layerprobe does not convert to RGB "
            f"(MONOCHROME1/2, RGB, YBR_FULL(_422), YBR_RCT/ICT and PALETTE COLOR are supported); {_SKIP}"
        )
    if rgb_hwc.ndim != 3 or rgb_hwc.shape[-1] != 3:
        raise ExtractError(f"image {where} is {photometric} but its pixels have shape {rgb_hwc.shape}, not (rows, columns, 3); {_SKIP}")
    return rgb_hwc.astype(np.float64) / float(2**n_bits - 1)


def _one_line(err: BaseException) -> str:
    """pydicom's message (some span lines: 'all plugins failed:' then one line each) on one line."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__
