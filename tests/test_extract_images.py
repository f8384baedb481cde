"""Image decoding: every pixel format ends as upright 8-bit RGB; bad files are errors naming the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerprobe.errors import ExtractError
from layerprobe.extract.data.images import read_image


def _save(image: Image.Image, path: Path, **kw) -> Path:
    image.save(path, **kw)
    return path


def _rgb(path: Path) -> np.ndarray:
    decoded = read_image(path)
    assert decoded.image.mode == "RGB"
    return np.asarray(decoded.image)


def test_grayscale_is_replicated_into_three_channels(tmp_path: Path) -> None:
    gray_hw = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    out = _rgb(_save(Image.fromarray(gray_hw), tmp_path / "g.png"))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray_hw)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_is_scaled_by_its_own_range(tmp_path: Path, suffix: str) -> None:
    # 12-bit data in a 16-bit file, as medical exports usually are.
    x_hw = np.array([[1000, 1000, 2500, 4000]], dtype=np.uint16)
    img = Image.fromarray(x_hw)
    assert img.mode == "I;16"
    out = _rgb(_save(img, tmp_path / f"x{suffix}"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 128, 255])  # (2500-1000)/3000*255 = 127.5 -> 128
    assert (out[..., 0] == out[..., 2]).all()


def test_32bit_int_float_and_constant_images(tmp_path: Path) -> None:
    i_hw = np.array([[-5, 0, 5]], dtype=np.int32)
    np.testing.assert_array_equal(_rgb(_save(Image.fromarray(i_hw), tmp_path / "i.tif"))[0, :, 1], [0, 128, 255])
    f_hw = np.array([[0.25, 0.5, np.nan, 1.25]], dtype=np.float32)  # NaN counts as 0, so range is [0, 1.25]
    np.testing.assert_array_equal(_rgb(_save(Image.fromarray(f_hw), tmp_path / "f.tif"))[0, :, 0], [51, 102, 0, 255])
    flat = Image.fromarray(np.full((3, 3), 700, np.uint16))
    assert _rgb(_save(flat, tmp_path / "flat.png")).max() == 0


def test_palette_and_one_bit(tmp_path: Path) -> None:
    rgb_hw3 = np.zeros((4, 4, 3), np.uint8)
    rgb_hw3[:2] = (200, 30, 10)
    rgb_hw3[2:] = (0, 90, 250)
    pal = Image.fromarray(rgb_hw3).quantize(colors=4)
    assert pal.mode == "P"
    np.testing.assert_array_equal(_rgb(_save(pal, tmp_path / "p.png")), np.asarray(pal.convert("RGB")))
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    np.testing.assert_array_equal(_rgb(_save(bits, tmp_path / "b.png"))[..., 0], [[0, 255], [255, 0]])


def test_alpha_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [200, 100, 50, 128]]], np.uint8)
    out = _rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    np.testing.assert_allclose(out[0, 2], np.array([200, 100, 50]) * 128 / 255, atol=1)
    la = Image.fromarray(np.array([[[90, 255], [90, 0]]], np.uint8), "LA")
    np.testing.assert_array_equal(_rgb(_save(la, tmp_path / "la.png"))[0, :, 0], [90, 0])
    # A palette image whose colour 0 is transparent.
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "L").convert("P")
    pal.putpalette([250, 250, 250, 10, 20, 30] + [0] * 762)
    out = _rgb(_save(pal, tmp_path / "pt.png", transparency=0))
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [10, 20, 30]])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    x_hw3 = np.zeros((2, 3, 3), np.uint8)
    x_hw3[0, 0] = 255  # top-left marker
    img = Image.fromarray(x_hw3)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = _rgb(_save(img, tmp_path / "o.png", exif=exif))
    assert out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[..., 0], np.rot90(x_hw3[..., 0], k=-1))


def test_cmyk_and_multiframe(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red
    np.testing.assert_array_equal(_rgb(_save(cmyk, tmp_path / "c.tif"))[0, 0], [255, 0, 0])
    frames = [Image.new("L", (2, 2), v) for v in (40, 200)]
    frames[0].save(tmp_path / "m.gif", save_all=True, append_images=frames[1:])
    assert _rgb(tmp_path / "m.gif")[0, 0, 0] == 40


def test_sha256_is_of_the_file_bytes(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (5, 5), (1, 2, 3)), tmp_path / "h.png")
    assert read_image(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def _truncated(tmp_path: Path, fmt: str) -> Path:
    rng = np.random.default_rng(0)
    full = tmp_path / f"full.{fmt}"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated-png", "truncated-jpeg", "missing", "directory"])
def test_bad_files_are_errors_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"bad-{kind}.png"
    if kind == "garbage":
        path.write_bytes(b"\x89PNG not really" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind.startswith("truncated"):
        path = _truncated(tmp_path, "png" if kind.endswith("png") else "jpeg")
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(ExtractError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "--skip-bad" in message
