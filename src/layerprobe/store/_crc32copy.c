/* Copy a buffer and compute its CRC-32 (zlib's) in one pass over the bytes.
 *
 * A checked read copies each chunk from the page cache into the caller's array and hashes it.
 * Done as two passes (a copy, then ISA-L's CRC over the copy) the hash re-reads bytes that have
 * partly left L1/L2 and costs ~10% of the read; here each 64-byte block is folded into the CRC
 * while it is in registers for the copy, so the check rides on the copy's memory traffic.
 *
 * The CRC is the carry-less-multiply folding of Intel's white paper "Fast CRC Computation for
 * Generic Polynomials Using PCLMULQDQ" (2009) for the reflected polynomial 0xEDB88320; the folding
 * constants are x^n mod P(x), bit-reflected and shifted left by one (derived and checked in
 * tests/test_store_crc32copy.py). CPUs without PCLMULQDQ, and bytes past the last 16-byte block,
 * take a byte-wise table loop. Values equal zlib.crc32 for every length and start value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t crc_table[256];

static void make_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

/* crc is the CRC register (zlib's value inverted), as in every function below. */
static uint32_t copy_crc_bytes(unsigned char *dst, const unsigned char *src, size_t n, uint32_t crc)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b = src[i];
        dst[i] = b;
        crc = crc_table[(crc ^ b) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL_PATH 1
#define CLMUL __attribute__((target("pclmul,sse4.1")))

/* x folded forward by the distance the constants k (low: k_lo, high: k_hi) encode, plus data. */
CLMUL static inline __m128i fold(__m128i x, __m128i k, __m128i data)
{
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), data);
}

CLMUL static inline __m128i copy16(unsigned char *dst, const unsigned char *src)
{
    __m128i v = _mm_loadu_si128((const __m128i *)src);
    _mm_storeu_si128((__m128i *)dst, v);
    return v;
}

/* Needs n >= 64. */
CLMUL static uint32_t copy_crc_clmul(unsigned char *dst, const unsigned char *src, size_t n, uint32_t crc)
{
    const __m128i by4 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);  /* x^(512-32), x^(512+32) */
    const __m128i by1 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);  /* x^(128-32), x^(128+32) */
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);               /* x^64 */
    const __m128i poly = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL); /* mu', P' */
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);

    __m128i x0 = _mm_xor_si128(copy16(dst, src), _mm_cvtsi32_si128((int)crc));
    __m128i x1 = copy16(dst + 16, src + 16);
    __m128i x2 = copy16(dst + 32, src + 32);
    __m128i x3 = copy16(dst + 48, src + 48);
    src += 64, dst += 64, n -= 64;
    for (; n >= 64; src += 64, dst += 64, n -= 64) {
        x0 = fold(x0, by4, copy16(dst, src));
        x1 = fold(x1, by4, copy16(dst + 16, src + 16));
        x2 = fold(x2, by4, copy16(dst + 32, src + 32));
        x3 = fold(x3, by4, copy16(dst + 48, src + 48));
    }
    x1 = fold(x0, by1, x1);
    x2 = fold(x1, by1, x2);
    x3 = fold(x2, by1, x3);
    for (; n >= 16; src += 16, dst += 16, n -= 16)
        x3 = fold(x3, by1, copy16(dst, src));

    /* 128 -> 64 bits, then Barrett reduction to 32 bits. */
    __m128i t = _mm_clmulepi64_si128(x3, by1, 0x10);
    x3 = _mm_xor_si128(_mm_srli_si128(x3, 8), t);
    t = _mm_srli_si128(x3, 4);
    x3 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x3, low32), k5, 0x00), t);
    t = _mm_clmulepi64_si128(_mm_and_si128(x3, low32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly, 0x00);
    crc = (uint32_t)_mm_extract_epi32(_mm_xor_si128(x3, t), 1);
    return copy_crc_bytes(dst, src, n, crc);
}
#endif

static int clmul_ok;

static uint32_t copy_crc(unsigned char *dst, const unsigned char *src, size_t n, uint32_t crc)
{
#ifdef HAVE_CLMUL_PATH
    if (clmul_ok && n >= 64)
        return copy_crc_clmul(dst, src, n, crc);
#endif
    return copy_crc_bytes(dst, src, n, crc);
}

static PyObject *py_copy_crc32(PyObject *self, PyObject *args)
{
    Py_buffer dst, src;
    unsigned long start = 0;
    if (!PyArg_ParseTuple(args, "w*y*|k:copy_crc32", &dst, &src, &start))
        return NULL;
    if (!PyBuffer_IsContiguous(&dst, 'C') || !PyBuffer_IsContiguous(&src, 'C') || dst.len != src.len) {
        PyBuffer_Release(&dst);
        PyBuffer_Release(&src);
        PyErr_SetString(PyExc_ValueError, "copy_crc32 needs two contiguous buffers of the same length");
        return NULL;
    }
    uint32_t crc = ~(uint32_t)start;
    Py_BEGIN_ALLOW_THREADS
    crc = copy_crc((unsigned char *)dst.buf, (const unsigned char *)src.buf, (size_t)src.len, crc);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return PyLong_FromUnsignedLong(~crc);
}

static PyObject *py_accelerated(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(clmul_ok);
}

static PyMethodDef methods[] = {
    {"copy_crc32", py_copy_crc32, METH_VARARGS,
     "copy_crc32(dst, src, value=0) -> int\n\nCopy the bytes of src into dst (same length) and return "
     "zlib.crc32(src, value), in one pass. Releases the GIL."},
    {"accelerated", py_accelerated, METH_NOARGS,
     "True when the carry-less-multiply path runs on this CPU (else a byte-wise loop: correct, slow)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_crc32copy", NULL, -1, methods};

PyMODINIT_FUNC PyInit__crc32copy(void)
{
    make_table();
#ifdef HAVE_CLMUL_PATH
    __builtin_cpu_init();
    clmul_ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    return PyModule_Create(&module);
}
