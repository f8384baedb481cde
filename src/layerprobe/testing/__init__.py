"""Fixtures for tests, benchmarks and the demo; no library module but ``layerprobe.demo`` imports them."""
