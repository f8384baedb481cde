"""The compiled one-pass copy + CRC-32 of checked reads (src/layerprobe/store/_crc32copy.c).

Its values must be zlib's for every length, start value and alignment (a wrong CRC would turn every
checked read into a false "does not match" or, worse, let damage through), its folding constants
must be the ones the polynomial gives, and it must be built wherever a C compiler is present, since
a silent fallback would only show as slower reads.
"""

from __future__ import annotations

import re
import shutil
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import pytest

import layerprobe.store
from layerprobe.store import chunkio

try:
    from layerprobe.store import _crc32copy
except ImportError:
    _crc32copy = None

SOURCE = Path(layerprobe.store.__file__).parent / "_crc32copy.c"
needs_ext = pytest.mark.skipif(_crc32copy is None, reason="layerprobe.store._crc32copy is not built (no C compiler at install)")


def test_built_wherever_a_compiler_is():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the two-pass checked read is used")
    assert _crc32copy is not None, "a C compiler is here but the extension is not built: reinstall with 'pip install -e .'"


@needs_ext
@pytest.mark.parametrize("start", [0, 1, 0xDEADBEEF, 0xFFFFFFFF])
def test_equals_zlib_for_every_length_and_start(start):
    rng = np.random.default_rng(start)
    for n in [*range(0, 260), 1000, 4096 + 15, 1 << 20, (1 << 20) + 7]:
        src = rng.integers(0, 256, n, dtype=np.uint8)
        dst = np.zeros_like(src)
        assert _crc32copy.copy_crc32(dst, src, start) == zlib.crc32(src, start), n
        assert np.array_equal(dst, src)


@needs_ext
def test_unaligned_views_and_bytes_sources():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, 10_000, dtype=np.uint8)
    out = np.zeros(10_016, dtype=np.uint8)
    for a in range(16):
        for b in range(16):
            n = 9_000 - b
            assert _crc32copy.copy_crc32(out[b : b + n], data[a : a + n]) == zlib.crc32(data[a : a + n])
            assert np.array_equal(out[b : b + n], data[a : a + n])
    blob = data.tobytes()
    assert _crc32copy.copy_crc32(bytearray(len(blob)), blob) == zlib.crc32(blob)


@needs_ext
def test_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="same length"):
        _crc32copy.copy_crc32(np.zeros(10, np.uint8), np.zeros(11, np.uint8))
    with pytest.raises((TypeError, ValueError)):  # numpy refuses a strided view a contiguous buffer
        _crc32copy.copy_crc32(np.zeros(20, np.uint8)[::2], np.zeros(10, np.uint8))
    with pytest.raises(TypeError):
        _crc32copy.copy_crc32(b"0123456789", np.zeros(10, np.uint8))  # read-only destination


@needs_ext
def test_checked_reads_use_it_when_it_runs_here():
    if not _crc32copy.accelerated():
        pytest.skip("this CPU has no PCLMULQDQ: checked reads use the two-pass path")
    assert chunkio._fused_copy_crc32() is _crc32copy.copy_crc32
    assert chunkio.checked_read_method("crc32").startswith("one pass")
    assert chunkio.checked_read_method("xxh3_64").startswith("two passes")


def _xn_mod_p(n: int) -> int:
    """x^n mod P(x) over GF(2), P the CRC-32 polynomial 0x104C11DB7."""
    r = 1
    for _ in range(n):
        r <<= 1
        if r >> 32:
            r ^= 0x104C11DB7
    return r


def _folding_constant(n: int) -> int:
    return int(f"{_xn_mod_p(n):032b}"[::-1], 2) << 1  # bit-reflected, shifted left by one


def _reflect33(v: int) -> int:
    return int(f"{v:033b}"[::-1], 2)


def test_folding_constants_are_the_polynomials():
    """The constants written in the C source are x^n mod P for the distances it folds over."""
    text = SOURCE.read_text()
    constants = {int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{9})LL", text)}
    quotient, a = 0, 1 << 64  # x^64 div P (Barrett's mu)
    while a.bit_length() >= 33:
        shift = a.bit_length() - 33
        quotient |= 1 << shift
        a ^= 0x104C11DB7 << shift
    expected = {_folding_constant(n) for n in (512 + 32, 512 - 32, 128 + 32, 128 - 32, 64)}
    expected |= {_reflect33(0x104C11DB7), _reflect33(quotient)}
    assert constants == expected
