"""DICOM decoding on real files that ship inside the pydicom wheel (never downloaded).

Each expected picture is computed here from the raw stored values and the file's own tags in
float64, with the standard's formulas (PS3.3 C.11), not with pydicom's LUT functions, so a decoder
that skips the rescale, inverts at the wrong step or drops to 8 bits early fails. Where no shipped
file has a feature (MONOCHROME1, a VOI LUT Sequence, functional groups, a slope other than 1), a
real file's tags are edited to give it, and the test says so.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import apply_color_lut, convert_color_space, get_decoder, pixel_array  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from layerprobe.errors import ExtractError  # noqa: E402
from layerprobe.extract.data.files import iter_images  # noqa: E402
from layerprobe.extract.data.dicom import decode_dicom, parse_frame_rule  # noqa: E402
from layerprobe.extract.data.images import read_image  # noqa: E402


def _real(name: str) -> Path:
    found = get_testdata_file(name, download=False)  # a local file of the wheel, or None: never the network
    assert found is not None, f"{name} no longer ships inside the pydicom wheel"
    return Path(found)


def _ds(name: str) -> Dataset:
    return pydicom.dcmread(_real(name))


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _decode(data: bytes, where: str = "x.dcm", **kw) -> np.ndarray:
    image = decode_dicom(data, where, **kw)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    out = np.asarray(image)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    return out[..., 0]


def _linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR) to [0, 1], float64."""
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _to8(unit: np.ndarray) -> np.ndarray:
    return np.rint(unit * 255.0).astype(np.uint8)


def _one_line_error(data: bytes, where: str, **kw) -> str:
    with pytest.raises(ExtractError) as caught:
        decode_dicom(data, where, **kw)
    message = str(caught.value)
    assert "\n" not in message and where in message
    return message


# --- grayscale pipeline --------------------------------------------------------------------------


@pytest.mark.parametrize("slope, intercept", [(None, None), (0.5, -100.0)])
def test_ct_rescale_is_applied_before_a_window_in_hounsfield_units(slope, intercept) -> None:
    # CT_small: a real CT, RescaleSlope 1, RescaleIntercept -1024, no window tags. A window in HU
    # is added (W 2000 / L 100); a second case also edits the slope (no shipped CT has one != 1).
    ds = _ds("CT_small.dcm")
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = 100, 2000
    stored = ds.pixel_array.astype(np.float64)
    hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = _decode(_bytes(ds))
    # One pixel by hand: stored 1928 -> 1928 * slope + intercept HU -> the linear window.
    assert stored[64, 64] == 1928
    hu_64 = 1928 * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    by_hand = round(((hu_64 - 99.5) / 1999 + 0.5) * 255)
    assert 0 < by_hand < 255 and out[64, 64] == by_hand
    np.testing.assert_array_equal(out, _to8(_linear_window(hu, 100, 2000)))


def test_a_real_ct_with_its_own_window_and_intercept() -> None:
    # 693_J2KI: a real CT, JPEG 2000 (Pillow decodes it), intercept -1024, window L 40 / W 100.
    ds = _ds("693_J2KI.dcm")
    if not get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        pytest.skip("no JPEG 2000 decoder installed")
    assert (float(ds.RescaleIntercept), float(ds.WindowCenter), float(ds.WindowWidth)) == (-1024, 40, 100)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = _decode(_real("693_J2KI.dcm").read_bytes())
    np.testing.assert_array_equal(out, _to8(_linear_window(hu, 40, 100)))
    assert out.min() == 0 and out.max() == 255  # air is black, bone white, soft tissue between


def test_16bit_mr_stays_at_full_depth_until_the_end() -> None:
    # examples_overlay: a real 12-bit MR in 16-bit words, two windows (the first is used).
    ds = _ds("examples_overlay.dcm")
    assert list(ds.WindowCenter) == [450, 200] and list(ds.WindowWidth) == [790, 443]
    stored = ds.pixel_array.astype(np.float64)
    out = _decode(_real("examples_overlay.dcm").read_bytes())
    np.testing.assert_array_equal(out, _to8(_linear_window(stored, 450, 790)))
    # A window over exactly the stored range must use all of 0..255 with fine steps: converting to
    # 8 bits before the window (1123 levels -> 256) would leave gaps and miss this equality.
    lo, hi = stored.min(), stored.max()
    ds.WindowCenter, ds.WindowWidth = (lo + hi + 1) / 2, hi - lo + 1
    full = _decode(_bytes(ds))
    assert full.min() == 0 and full.max() == 255 and len(np.unique(full)) > 200
    np.testing.assert_array_equal(full, _to8((stored - lo) / (hi - lo)))


def test_mr_window_tags_are_applied() -> None:
    # MR_small: a real signed 16-bit MR with Window Center 600 / Width 1600.
    ds = _ds("MR_small.dcm")
    stored = ds.pixel_array.astype(np.float64)
    out = _decode(_real("MR_small.dcm").read_bytes())
    np.testing.assert_array_equal(out, _to8(_linear_window(stored, 600, 1600)))
    assert out.max() == 255 and out.min() == _to8(_linear_window(stored.min(), 600, 1600))


def test_without_window_or_voi_lut_the_modality_values_own_range_is_used() -> None:
    ds = _ds("MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    stored = ds.pixel_array.astype(np.float64)
    np.testing.assert_array_equal(_decode(_bytes(ds)), _to8((stored - stored.min()) / (stored.max() - stored.min())))


def test_a_voi_lut_sequence_is_applied_and_preferred_over_the_window() -> None:
    # No shipped file has a VOI LUT Sequence: a gamma-like 16-bit LUT is added to MR_small,
    # which keeps its window tags (the LUT must win, as PS3.3 C.11.2 and viewers do).
    ds = _ds("MR_small.dcm")
    stored = ds.pixel_array.astype(np.int64)
    first, n_entries = 100, 2100
    lut = np.rint(65535 * (np.arange(n_entries) / (n_entries - 1)) ** 0.5).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [n_entries, first, 16]
    item.LUTData = lut.astype("<u2").tobytes()  # OW, as most files store it (the file is little endian)
    ds.VOILUTSequence = Sequence([item])
    expected = lut[np.clip(stored - first, 0, n_entries - 1)] / 65535.0
    np.testing.assert_array_equal(_decode(_bytes(ds)), _to8(expected))


@pytest.mark.parametrize("windowed", [True, False])
def test_monochrome1_is_inverted_after_the_window(windowed: bool) -> None:
    # No MONOCHROME1 file ships with pydicom: MR_small's Photometric Interpretation is changed.
    ds = _ds("MR_small.dcm")
    stored = ds.pixel_array.astype(np.float64)
    if windowed:
        unit = _linear_window(stored, 600, 1600)
    else:
        del ds.WindowCenter, ds.WindowWidth
        unit = (stored - stored.min()) / (stored.max() - stored.min())
    ds.PhotometricInterpretation = "MONOCHROME1"
    out = _decode(_bytes(ds))
    np.testing.assert_array_equal(out, _to8(1.0 - unit))
    # Above the window is white in MONOCHROME2, so black here; the darkest stored pixel is brightest.
    assert out[stored.argmax() // 64, stored.argmax() % 64] == 0
    assert out[stored.argmin() // 64, stored.argmin() % 64] == out.max()


def test_enhanced_multi_frame_functional_groups_give_each_frame_its_rescale_and_window() -> None:
    # rtdose (15 real frames) gets per-frame windows and a shared rescale in functional groups,
    # as enhanced CT/MR files carry them (no shipped image file has them).
    ds = _ds("rtdose.dcm")
    stored_f = ds.pixel_array.astype(np.float64)
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    shared.PixelValueTransformationSequence[0].RescaleSlope = 0.001
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -800.0
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for i in range(int(ds.NumberOfFrames)):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 100 + 20 * i, 300
        group = Dataset()
        group.FrameVOILUTSequence = Sequence([voi])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    data = _bytes(ds)
    for i in (2, 9):
        values = stored_f[i] * 0.001 - 800.0
        np.testing.assert_array_equal(_decode(data, frame=i), _to8(_linear_window(values, 100 + 20 * i, 300)))


# --- frames ----------------------------------------------------------------------------------------


def test_multi_frame_needs_a_frame_rule_and_then_uses_that_frame() -> None:
    path = _real("rtdose.dcm")  # a real 15-frame dose grid, 32-bit, no window: min-max per frame
    data = path.read_bytes()
    message = _one_line_error(data, str(path))
    assert "15 frames" in message and "frame=" in message
    stored_f = pydicom.dcmread(path).pixel_array.astype(np.float64)

    def expected(i: int) -> np.ndarray:
        x = stored_f[i]
        return _to8((x - x.min()) / (x.max() - x.min()))

    for rule, index in [("first", 0), ("middle", 7), (3, 3), (-1, 14)]:
        np.testing.assert_array_equal(_decode(data, str(path), frame=rule), expected(index))
    assert not np.array_equal(expected(0), expected(7))  # the rule matters on this file
    assert "frame index 15" in _one_line_error(data, str(path), frame=15)


def test_a_colour_multi_frame_file_gives_the_chosen_rgb_frame() -> None:
    path = _real("SC_rgb_rle_2frame.dcm")  # real RLE, RGB, 2 frames
    stored = pydicom.dcmread(path).pixel_array
    for i in (0, 1):
        np.testing.assert_array_equal(np.asarray(decode_dicom(path.read_bytes(), str(path), frame=i)), stored[i])


def test_single_frame_files_ignore_the_rule_and_bad_rules_are_refused() -> None:
    data = _real("MR_small.dcm").read_bytes()
    np.testing.assert_array_equal(_decode(data, frame="middle"), _decode(data))
    with pytest.raises(ExtractError, match="frame rule"):
        decode_dicom(data, "x.dcm", frame="last")  # type: ignore[arg-type]
    assert [parse_frame_rule(t) for t in ("first", "middle", "4", "-1")] == ["first", "middle", 4, -1]
    with pytest.raises(ExtractError, match="frame rule 'mid'"):
        parse_frame_rule("mid")


# --- colour ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_rle_16bit.dcm", "examples_palette.dcm"])
def test_colour_files_become_rgb(name: str) -> None:
    ds = _ds(name)
    out = np.asarray(decode_dicom(_real(name).read_bytes(), name))
    assert out.dtype == np.uint8 and out.shape == (ds.Rows, ds.Columns, 3)
    if name == "SC_ybr_full_422_uncompressed.dcm":  # YCbCr (subsampled) converted to RGB
        ybr = pixel_array(ds, raw=True)
        np.testing.assert_array_equal(out, convert_color_space(ybr, "YBR_FULL", "RGB"))
        assert not np.array_equal(out, ybr)
    if name == "SC_rgb_rle_16bit.dcm":  # 16-bit RGB scaled by its full range, 65535
        np.testing.assert_array_equal(out, _to8(ds.pixel_array / 65535.0))
    if name == "examples_palette.dcm":  # indices through the 16-bit palette
        np.testing.assert_array_equal(out, _to8(apply_color_lut(ds.pixel_array, ds) / 65535.0))


# --- errors ----------------------------------------------------------------------------------------


def test_truncated_and_corrupt_files_are_one_line_errors(tmp_path: Path) -> None:
    real = _real("MR_truncated.dcm")  # a real file whose pixel data is cut short
    assert "cannot be decoded" in _one_line_error(real.read_bytes(), str(real))
    whole = _real("CT_small.dcm").read_bytes()
    assert "pixel data cannot be decoded" in _one_line_error(whole[: len(whole) // 2], "half.dcm")
    assert "no pixel data" in _one_line_error(whole[:600], "head.dcm")
    assert "not a DICOM" in _one_line_error(whole[:100], "tiny.dcm")
    assert "no pixel data" in _one_line_error(_real("rtplan.dcm").read_bytes(), "rtplan.dcm")


def test_non_dicom_files_named_dcm_are_one_line_errors(tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(png, "PNG")
    for where, data in [("photo.dcm", png.getvalue()), ("notes.dcm", b"patient list\n" * 40), ("empty.dcm", b"")]:
        assert "not a DICOM image" in _one_line_error(data, where)
    path = tmp_path / "photo.dcm"
    path.write_bytes(png.getvalue())
    with pytest.raises(ExtractError, match="photo.dcm is not a DICOM image"):
        read_image(path)


def test_a_missing_decoder_names_what_to_install() -> None:
    ds = _ds("MR_small_jpeg_ls_lossless.dcm")  # real JPEG-LS file
    if get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    message = _one_line_error(_real("MR_small_jpeg_ls_lossless.dcm").read_bytes(), "jls.dcm")
    assert "JPEG-LS" in message and "install one of" in message and "pylibjpeg" in message


def test_a_file_without_preamble_or_file_meta_is_read_by_force() -> None:
    # MR_small rewritten as old exports are: no 128-byte preamble, no 'DICM', no file meta.
    ds = _ds("MR_small.dcm")
    reference = _decode(_bytes(ds))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=False, implicit_vr=False, little_endian=True)
    assert buf.getvalue()[128:132] != b"DICM"
    np.testing.assert_array_equal(_decode(buf.getvalue()), reference)


# --- read_image and folder scanning ---------------------------------------------------------------


def test_read_image_decodes_dicom_by_suffix_or_magic_and_hashes_the_file_bytes(tmp_path: Path) -> None:
    data = _real("MR_small.dcm").read_bytes()
    expected = _decode(data)
    for name in ("scan.DCM", "scan.dicom", "scan_without_suffix"):  # the last is found by 'DICM' at 128
        path = tmp_path / name
        path.write_bytes(data)
        decoded = read_image(path)
        assert decoded.image.mode == "RGB" and decoded.image.size == (64, 64)
        np.testing.assert_array_equal(np.asarray(decoded.image)[..., 0], expected)
        assert decoded.sha256 == hashlib.sha256(data).hexdigest()
    multi = tmp_path / "dose.dcm"
    multi.write_bytes(_real("rtdose.dcm").read_bytes())
    with pytest.raises(ExtractError, match="dose.dcm is a multi-frame"):
        read_image(multi)
    assert read_image(multi, frame="middle").image.size == (10, 10)


def test_folder_scans_list_dicom_files(tmp_path: Path) -> None:
    for name in ("a.dcm", "b.DICOM", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in iter_images(tmp_path)] == ["a.dcm", "b.DICOM"]
