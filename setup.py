"""The one compiled piece: the store's fused copy + CRC-32 (src/layerprobe/store/_crc32copy.c).

Optional: where it cannot be built (no C compiler), the install still succeeds and checked reads
copy and hash in two passes (store/chunkio.py), with the same results. Everything else is in
pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("layerprobe.store._crc32copy", ["src/layerprobe/store/_crc32copy.c"], optional=True, extra_compile_args=["-O3"])])
