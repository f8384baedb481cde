"""Where a sweep's results go: checked before any compute, kept group by group, resumed by a rerun.

Beside ``--out results.parquet`` a sweep keeps a sidecar folder while it runs::

    results.parquet.partial/
        sweep.json          which sweep this is (:func:`sweep_key`, as JSON)
        <run_id>-answer_logits-0-0.parquet      the model rows of one store
        <run_id>-<site>-<first>-<last>.parquet  every row of one slab group (all its layers and splits)
    results.parquet         written at the end (temporary file + rename), then the folder is removed

Rules, and why
- ``--out`` may not lie inside a store (any folder above it holding a layerprobe ``zarr.json``), and
  an existing file is replaced only if it is a layerprobe results table and ``overwrite`` is set:
  a mistyped ``--out`` must never destroy a store's ``samples.parquet`` or someone's data.
- The folder and its ``sweep.json`` are written before anything is trained, so an unwritable place
  fails at once, not after hours of compute.
- Each part and the final table are written to a temporary name, synced and renamed: a part is
  whole or absent, whatever kills the process. A rerun of the same sweep reads the parts, skips the
  layers they hold and trains only the rest; its table equals an uninterrupted run's (same rows,
  same order: parts are assembled in plan order however they were made).
- The sweep is identified by what decides its rows (stores' paths and run ids, the layers of every
  site, kinds, seeds, recipes, class weight, splits, dtype), not by runtime settings (device, memory,
  progress), which may change between runs. A partial folder of another sweep is refused with the
  difference named; ``overwrite`` discards it. The final table carries the key in its parquet
  metadata, so a rerun of a finished sweep returns that table without training anything.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from layerprobe import vocab
from layerprobe.errors import ProbeError
from layerprobe.results import is_results_table
from layerprobe.store.chunkio import atomic_write

if TYPE_CHECKING:
    from layerprobe.probe.config import SweepConfig
    from layerprobe.probe.grid import StorePlan

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
MANIFEST_FORMAT = "layerprobe-partial-sweep-1"
"""``format`` of a manifest this version writes and reads."""
"""The partial folder's file naming its sweep."""
METADATA_KEY = "layerprobe.sweep"
"""Parquet key-value metadata of the final table: the sweep key as JSON."""
PARTIAL_SUFFIX = ".partial"
STORE_MARKER = "zarr.json"
"""A folder holding this file with ``attributes.layerprobe`` is a store (see ``store/schema.py``)."""


class SweepOutput:
    """The rows of one sweep as its groups finish; with a file ``out``, kept in its partial folder.

    Construction does every check and creates the folder (before any compute). Then ``todo`` says
    which layers still need training, ``add`` keeps a finished group, ``finish`` writes the table.
    ``finished`` is the table itself when ``out`` already holds this very sweep (nothing to train).
    """

    def __init__(self, cfg: SweepConfig, plans: Sequence[StorePlan]) -> None:
        self.key = sweep_key(cfg, plans)
        self.out, self.folder = cfg.out, None
        self.finished: pl.DataFrame | None = None
        self._frames: list[pl.DataFrame] = []
        self._done: set[tuple[str, str, int]] = set()
        # (run_id, site) -> (store position, site position, layer -> position): the plan's order
        self._order = {
            (plan.run_id, site): (i, j, {layer: k for k, layer in enumerate(layers)})
            for i, plan in enumerate(plans)
            for j, (site, layers) in enumerate([(vocab.ANSWER_SITE, (0,)), (vocab.ANSWER_TEXT_SITE, (0,)), *((s.name, s.layers) for s in plan.sites)])
        }  # fmt: skip
        if cfg.out is not None:
            self._open(cfg.out, cfg.overwrite)

    def _open(self, out: Path, overwrite: bool) -> None:
        check_out_path(out)
        folder = out.with_name(out.name + PARTIAL_SUFFIX)
        if out.exists():
            recorded = finished_key(out)
            if recorded == self.key:
                self.finished = pl.read_parquet(out)
                if folder.is_dir():
                    clear_partial(folder)  # killed after the table's rename, before the clean-up
                return
            if not overwrite:
                why = key_difference(self.key, recorded) if recorded else "its sweep is not recorded"
                raise ProbeError(f"--out {out} already holds the results table of another sweep ({why}); pass --overwrite to replace it, or choose another --out")
        if folder.exists():
            theirs = _manifest_key(folder)
            if theirs is not None and theirs != self.key:
                if not overwrite:
                    raise ProbeError(
                        f"{folder} holds an unfinished sweep with other settings ({key_difference(self.key, theirs)}); "
                        "rerun that sweep's command to finish it, or pass --overwrite to discard it"
                    )
                clear_partial(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_json({"format": MANIFEST_FORMAT, "key": self.key}, folder / MANIFEST)
        except OSError as err:
            raise write_failure("the sweep's progress folder", folder, err, "choose a writable --out") from None
        for frame in read_parts(folder):
            self._keep(frame)
        if self._frames:
            log.info("resuming the sweep in %s: %d finished probe groups kept", folder, len(self._frames))
        self.folder = folder

    def todo(self, run_id: str, site: str, layers: Sequence[int]) -> tuple[int, ...]:
        """The layers of ``layers`` whose probes are not finished yet."""
        return tuple(layer for layer in layers if (run_id, site, layer) not in self._done)

    def add(self, frame: pl.DataFrame) -> None:
        """Keep the rows of one finished group (in the partial folder first, when there is one)."""
        if self.folder is not None:
            path = self.folder / part_name(frame)
            try:
                write_parquet(frame, path)
            except (OSError, pl.exceptions.PolarsError) as err:
                then = f"free space or fix the folder, then rerun the same command to resume ({len(self._frames)} finished probe groups are kept)"
                raise write_failure("finished probes to", path, err, then) from None
        self._keep(frame)

    def _keep(self, frame: pl.DataFrame) -> None:
        self._frames.append(frame)
        self._done.update(zip(frame.get_column("run_id"), frame.get_column("site"), frame.get_column("layer")))

    def finish(self, schema: dict[str, Any]) -> pl.DataFrame:
        """The whole table, groups in plan order; written atomically to ``out`` (then the partial folder goes)."""
        frames = sorted(self._frames, key=self._position)
        table = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=schema)
        if self.out is None or self.folder is None:
            return table
        try:
            write_parquet(table, self.out, metadata={METADATA_KEY: json.dumps(self.key, sort_keys=True)})
        except (OSError, pl.exceptions.PolarsError) as err:
            then = f"the finished probes are kept in {self.folder}; free space and rerun the same command to write it without training again"
            raise write_failure("the results table", self.out, err, then) from None
        shutil.rmtree(self.folder, ignore_errors=True)
        return table

    def _position(self, frame: pl.DataFrame) -> tuple[int, int, int]:
        store, site, layers = self._order[(frame.get_column("run_id")[0], frame.get_column("site")[0])]
        return store, site, min(layers[layer] for layer in frame.get_column("layer"))


def _manifest_key(folder: Path) -> dict[str, Any] | None:
    """The key in a partial folder's manifest; None for an empty folder; an error for a foreign one."""
    if not any(folder.iterdir()):
        return None
    try:
        doc = json.loads((folder / MANIFEST).read_text())
        if doc.get("format") == MANIFEST_FORMAT and isinstance(doc.get("key"), dict):
            return doc["key"]
    except (OSError, ValueError, AttributeError):
        pass
    raise ProbeError(f"{folder} exists but is not a probe sweep's progress folder (no readable {MANIFEST}); move it away or choose another --out")


def sweep_key(cfg: SweepConfig, plans: Sequence[StorePlan]) -> dict[str, Any]:
    """What decides the rows of a sweep, as plain JSON values (lists, not tuples: it is compared
    with keys read back from JSON)."""
    mlp = vocab.MLP in cfg.kinds
    key = {
        "stores": [
            {"store": str(plan.path), "run_id": plan.run_id, "sites": {site.name: list(site.layers) for site in plan.sites}}
            for plan in plans
        ],
        "kinds": list(cfg.kinds),
        "seeds": list(cfg.seeds) if mlp else [],
        "preset": cfg.preset if mlp else None,
        "mlp_recipes": [spec.params() for spec in cfg.mlp_specs()] if mlp else [],
        "linear_recipe": asdict(cfg.linear) if vocab.LINEAR in cfg.kinds else None,
        "class_weight": cfg.class_weight,
        "kfold": cfg.kfold,
        "split_seed": cfg.split_seed,
        "split_fractions": list(cfg.split_fractions),
        "dtype": cfg.dtype,
    }
    return json.loads(json.dumps(key))


def key_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """The settings in which two sweep keys differ, for a one-line message."""
    names = [name for name in dict.fromkeys([*ours, *theirs]) if ours.get(name) != theirs.get(name)]
    parts = []
    for name in names:
        if name == "stores":
            parts.append("stores (paths, runs or layers)")
            continue
        mine, other = json.dumps(ours.get(name)), json.dumps(theirs.get(name))
        parts.append(f"{name} {mine} here vs {other} there" if len(mine) + len(other) < 60 else name)
    return "; ".join(parts) or "nothing"


def check_out_path(out: Path) -> None:
    """Refuse an ``--out`` inside a store, a folder, or a file that is not a results table."""
    for folder in out.resolve().parents:
        if _is_store(folder):
            raise ProbeError(f"--out {out} lies inside the store {folder}; write the results table outside any store")
    if out.is_dir():
        raise ProbeError(f"--out {out} is a folder; give a file name for the results table, e.g. {out / 'results.parquet'}")
    if out.exists() and not is_results_table(out):
        raise ProbeError(f"--out {out} exists and is not a layerprobe results table; choose another --out (probe never replaces other files)")


def _is_store(folder: Path) -> bool:
    marker = folder / STORE_MARKER
    if not marker.is_file():
        return False
    try:
        doc = json.loads(marker.read_text())
    except (OSError, ValueError):
        return True  # unreadable zarr metadata: treat it as a store rather than risk writing into one
    return isinstance(doc, dict) and isinstance(doc.get("attributes"), dict) and "layerprobe" in doc["attributes"]


def finished_key(out: Path) -> dict[str, Any] | None:
    """The sweep key recorded in the results table ``out`` (None: absent, or written by an older layerprobe)."""
    try:
        text = pl.read_parquet_metadata(out).get(METADATA_KEY)
        return json.loads(text) if text else None
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


def write_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``frame`` to ``path`` atomically (a synced temporary file beside it, then a rename)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, metadata=metadata)
    atomic_write(path, buffer.getvalue())


def write_json(doc: dict[str, Any], path: Path) -> None:
    """Write ``doc`` to ``path`` atomically (as :func:`write_parquet`)."""
    atomic_write(path, json.dumps(doc, indent=1, sort_keys=True).encode())


def write_failure(what: str, path: Path, err: Exception, then: str) -> ProbeError:
    """One line for a failed write (disk full, read-only folder...)."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0] if str(err) else type(err).__name__
    return ProbeError(f"cannot write {what} {path}: {reason}; {then}")


def clear_partial(folder: Path) -> None:
    """Remove a partial folder, refusing one that holds files a sweep did not write."""
    foreign = [p.name for p in folder.iterdir() if not (p.name == MANIFEST or p.suffix == ".parquet" or ".tmp-" in p.name)]
    if foreign:
        raise ProbeError(f"{folder} holds files probe did not write ({', '.join(sorted(foreign)[:3])}); move them away, then rerun")
    shutil.rmtree(folder)


def part_name(frame: pl.DataFrame) -> str:
    """File name of a part: the run, site and first/last layer of its rows (unique within a sweep)."""
    run_id, site = frame.get_column("run_id")[0], frame.get_column("site")[0]
    layers = frame.get_column("layer")
    return f"{run_id}-{re.sub(r'[^A-Za-z0-9._]+', '_', site)}-{layers.min()}-{layers.max()}.parquet"


def read_parts(folder: Path) -> list[pl.DataFrame]:
    """The readable part files of a partial folder (temporary files of a killed write are removed)."""
    frames = []
    for path in sorted(folder.iterdir()):
        if ".tmp-" in path.name:
            path.unlink(missing_ok=True)
        elif path.suffix == ".parquet":
            try:
                frame = pl.read_parquet(path)
            except (OSError, pl.exceptions.PolarsError):
                log.warning("part %s is unreadable; its probes are trained again", path)
                continue
            if frame.height:
                frames.append(frame)
    return frames
