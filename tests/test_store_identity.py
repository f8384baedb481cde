"""Run identity (store/schema.py marks the fields, store/identity.py compares them)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from layerprobe.errors import StoreError
from layerprobe.store.identity import Difference, first_difference
from layerprobe.store.schema import RunMeta, StoreHeader, attrs_to_header, header_to_attrs, identity_fields, new_header, stored_fields
from test_store_bytes_golden import CS, N, SITES, run_meta

# The schema-2 lists, as they were written out before they were derived from the dataclasses.
SCHEMA_2_RESUME_FIELDS = (
    "schema_version", "model_id", "model_revision", "model_hash", "model_type", "adapter",
    "adapter_hash", "dataset_name", "manifest_sha256", "prompt_template", "candidates",
    "candidate_token_ids", "class_names", "compute_dtype", "sites", "chunk_samples", "n_samples",
)
SCHEMA_2_KEYS = (*SCHEMA_2_RESUME_FIELDS, "library_versions", "created_at", "extra")


@pytest.fixture()
def header() -> StoreHeader:
    return new_header(run_meta(), SITES, CS, N)


def test_identity_fields_and_stored_keys_are_those_of_schema_2(header):
    # answer_tokens (generated answers, issue 12) and dicom_frame (the DICOM frame rule) are identity
    # fields whose keys are written only when not the default, so a store using neither keeps
    # exactly the schema-2 keys.
    # model_config_hash (the model's config and tokenizer files) is one too, also written only when known.
    at = SCHEMA_2_RESUME_FIELDS.index("compute_dtype") + 1
    assert identity_fields() == (*SCHEMA_2_RESUME_FIELDS[:at], "answer_tokens", "dicom_frame", "model_config_hash",
                                 *SCHEMA_2_RESUME_FIELDS[at:])
    assert tuple(header_to_attrs(header)) == SCHEMA_2_KEYS


def test_stored_values_and_a_round_trip(header):
    attrs = header_to_attrs(header)
    assert attrs["schema_version"] == 3 and attrs["candidates"] == ["cat", "dog", "owl"]
    assert attrs["sites"][SITES[1].name] == {"layer_names": list(SITES[1].layer_names), "hidden": SITES[1].hidden}
    assert attrs["extra"] is header.meta.extra
    assert attrs_to_header(json.loads(json.dumps(attrs)), "s") == header


def test_missing_free_fields_take_their_defaults_and_missing_identity_fields_are_damage(header):
    attrs = header_to_attrs(header)
    for name in ("library_versions", "created_at", "extra"):
        del attrs[name]
    back = attrs_to_header(attrs, "s")
    assert (back.library_versions, back.created_at, back.meta.extra) == ({}, "", {})
    assert attrs_to_header({**attrs, "extra": None}, "s").meta.extra == {}
    for name in ("model_id", "compute_dtype", "sites", "n_samples"):
        with pytest.raises(StoreError, match=f"damaged layerprobe metadata \\(KeyError: '{name}'\\)"):
            attrs_to_header({k: v for k, v in attrs.items() if k != name}, "s")


def test_first_difference_names_the_first_identity_field_in_stored_order(header):
    have = header_to_attrs(header)
    other = dataclasses.replace(header, meta=dataclasses.replace(header.meta, compute_dtype="float16", model_hash="0" * 64))
    want = header_to_attrs(dataclasses.replace(other, chunk_samples=4, created_at="later", library_versions={"x": "1"}))
    assert first_difference(have, want) == Difference("model_hash", "ab" * 32, "0" * 64)
    assert first_difference(have, {"compute_dtype": "float16", "chunk_samples": 4}).field == "compute_dtype"
    assert first_difference(have, {"candidates": ("cat", "dog", "owl")}) is None  # compared as JSON: tuple == list
    assert first_difference(have, {"extra": {"other": 1}, "created_at": "x"}) is None  # free fields never decide
    assert first_difference({}, {"adapter": None}) is None  # what ``have`` lacks counts as None


def test_a_name_that_is_not_a_stored_field_is_a_bug_not_a_match(header):
    with pytest.raises(ValueError, match="model_name"):
        first_difference(header_to_attrs(header), {"model_name": "x"})


def test_the_description_is_short():
    text = Difference("prompt_template", "a" * 100, "b").describe()
    assert text.startswith('"' + "a" * 56 + "...") and text.endswith('in the store, "b" now') and len(text) < 90


def test_every_field_is_stored_once():
    names = [f.name for f in stored_fields()]
    own = [f.name for f in dataclasses.fields(StoreHeader) if f.name != "meta"]
    assert sorted(names) == sorted(own + [f.name for f in dataclasses.fields(RunMeta)]) and len(set(names)) == len(names)


def test_a_run_id_names_local_folders_by_their_hash_not_their_path():
    from layerprobe.probe.grid import run_id

    meta = dataclasses.replace(run_meta(), model_id="/data/models/llava", adapter="/out-a/adapters/sft", adapter_hash="ab" * 32)
    moved = dataclasses.replace(meta, model_id="/elsewhere/llava", adapter="/out-b/adapters/sft")
    assert run_id(moved) == run_id(meta)  # the same weights wherever they are: one run (a study's two output roots)
    assert run_id(dataclasses.replace(meta, adapter_hash="cd" * 32)) != run_id(meta)
    assert run_id(dataclasses.replace(meta, model_hash="ef" * 32)) != run_id(meta)
    hub = dataclasses.replace(meta, model_id="org/llava")
    assert run_id(hub) != run_id(meta) and run_id(dataclasses.replace(hub, model_id="org/other")) != run_id(hub)  # hub ids count
