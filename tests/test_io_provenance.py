"""Atomic writes (a failed job never leaves a finished-looking artifact) and lineage back to the data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagmire.io import (
    atomic_dir,
    atomic_path,
    read_json,
    read_parquet_metadata,
    write_json,
    write_parquet,
)
from quagmire.provenance import file_record, identity_sha256, lineage, package_versions, sha256_file


class Boom(RuntimeError):
    pass


def _leftovers(folder: Path, final_name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != final_name)


# --- atomic_path --------------------------------------------------------------------------------------------


def test_atomic_path_file_appears_only_when_the_block_succeeds(tmp_path):
    final = tmp_path / "sub" / "out.txt"
    with atomic_path(final) as tmp:
        assert tmp != final
        assert tmp.parent == final.parent  # same filesystem: the rename is atomic
        tmp.write_text("done")
        assert not final.exists()
    assert final.read_text() == "done"
    assert _leftovers(final.parent, "out.txt") == []


def test_atomic_path_leaves_nothing_when_the_block_raises(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(Boom), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise Boom
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_the_previous_complete_file(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old and complete")
    with pytest.raises(Boom), atomic_path(final) as tmp:
        tmp.write_text("new but half")
        raise Boom
    assert final.read_text() == "old and complete"
    assert _leftovers(tmp_path, "out.txt") == []


def test_atomic_path_replaces_an_existing_file_on_success(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"


# --- atomic_dir ---------------------------------------------------------------------------------------------


def test_atomic_dir_folder_appears_only_when_the_block_succeeds(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        assert tmp.is_dir() and tmp.parent == final.parent
        (tmp / "weights.bin").write_bytes(b"123")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "x.json").write_text("{}")
        assert not final.exists()
    assert (final / "weights.bin").read_bytes() == b"123"
    assert (final / "nested" / "x.json").exists()
    assert _leftovers(tmp_path, "model") == []


def test_atomic_dir_leaves_nothing_when_the_block_raises(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(Boom), atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise Boom
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_failed_rewrite_keeps_the_previous_complete_folder(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v1")
    with pytest.raises(Boom), atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v2-half")
        raise Boom
    assert (final / "weights.bin").read_bytes() == b"v1"
    assert sorted(p.name for p in final.iterdir()) == ["weights.bin"]
    assert _leftovers(tmp_path, "model") == []


def test_atomic_dir_successful_rewrite_drops_stale_files(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        (tmp / "old.bin").write_bytes(b"v1")
    with atomic_dir(final) as tmp:
        (tmp / "new.bin").write_bytes(b"v2")
    assert sorted(p.name for p in final.iterdir()) == ["new.bin"]


# --- JSON and Parquet ---------------------------------------------------------------------------------------


def test_write_json_round_trips_and_accepts_numpy_and_paths(tmp_path):
    obj = {
        "b": [1, 2.5, None, True],
        "a": {"nested": "ü"},
        "np_int": np.int64(7),
        "np_float": np.float32(0.5),
        "path": Path("results/x"),
    }
    path = tmp_path / "deep" / "out.json"
    write_json(path, obj)
    back = read_json(path)
    assert back == {
        "b": [1, 2.5, None, True],
        "a": {"nested": "ü"},
        "np_int": 7,
        "np_float": 0.5,
        "path": "results/x",
    }
    text = path.read_text()
    assert text.endswith("\n")
    assert text.index('"a"') < text.index('"b"')  # key-sorted: stable diffs between runs


def test_write_json_refuses_unserialisable_objects_and_leaves_no_file(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_write_parquet_round_trips_frame_and_metadata(tmp_path):
    frame = pd.DataFrame(
        {"problem_id": ["a", "b"], "sample_idx": [0, 1], "correct": [True, False], "value": [0.25, np.nan]}
    )
    metadata = {"seed": np.int64(3), "model": Path("m/base"), "sampling": {"n": 4, "temperature": 1.0}}
    path = tmp_path / "x" / "samples.parquet"
    write_parquet(path, frame, metadata=metadata)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    expected = {"seed": 3, "model": "m/base", "sampling": {"n": 4, "temperature": 1.0}}
    assert read_parquet_metadata(path) == expected
    assert _leftovers(path.parent, "samples.parquet") == []


def test_parquet_without_metadata_reads_back_empty_metadata(tmp_path):
    path = tmp_path / "plain.parquet"
    write_parquet(path, pd.DataFrame({"x": [1]}))
    assert read_parquet_metadata(path) == {}


# --- provenance ---------------------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 9000  # > 1 MiB: more than one read chunk
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_file_record_has_path_size_and_hash(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert file_record(path) == {"path": str(path), "bytes": 5, "sha256": digest}


def test_lineage_records_the_sha256_of_every_data_file(tmp_path):
    files = []
    for i in range(2):
        p = tmp_path / f"data{i}.parquet"
        p.write_bytes(f"rows {i}".encode())
        files.append(p)
    record = lineage("sft", parent=None, data=files, settings={"lr": 0.001})
    assert record["kind"] == "sft"
    assert record["parent"] is None
    assert [d["sha256"] for d in record["data"]] == [
        hashlib.sha256(f"rows {i}".encode()).hexdigest() for i in range(2)
    ]
    assert [d["path"] for d in record["data"]] == [str(p) for p in files]
    assert record["settings"] == {"lr": 0.001}
    assert "torch" in record["packages"]
    json.dumps(record)  # storable as lineage.json as is


def test_lineage_embeds_the_parents_lineage_so_the_chain_is_readable_from_the_end(tmp_path):
    data = tmp_path / "pool.parquet"
    data.write_bytes(b"pool")
    base = tmp_path / "base"
    base.mkdir()
    write_json(base / "lineage.json", lineage("pretrain", parent=None, data=[], settings={"seed": 0}))
    sft = tmp_path / "sft"
    sft.mkdir()
    write_json(sft / "lineage.json", lineage("sft", parent=base, data=[data], settings={"epochs": 2}))
    rl = lineage("grpo", parent=sft, data=[], settings={"steps": 3})

    assert rl["parent"]["path"] == str(sft)
    sft_record = rl["parent"]["lineage"]
    assert sft_record == read_json(sft / "lineage.json")
    assert sft_record["kind"] == "sft"
    assert sft_record["data"][0]["sha256"] == hashlib.sha256(b"pool").hexdigest()
    base_record = sft_record["parent"]["lineage"]
    assert base_record["kind"] == "pretrain"
    assert base_record["settings"] == {"seed": 0}
    assert base_record["parent"] is None


def test_lineage_of_a_parent_without_lineage_still_names_the_parent(tmp_path):
    record = lineage("grpo", parent=tmp_path, data=[], settings={})
    assert record["parent"] == {"path": str(tmp_path), "sha256": identity_sha256(tmp_path), "lineage": None}


def test_package_versions_reports_missing_packages_instead_of_failing():
    versions = package_versions(["pandas", "surely-not-a-real-package-xyz"])
    assert versions["pandas"] == pd.__version__
    assert versions["surely-not-a-real-package-xyz"] == "not installed"


def test_atomic_writes_respect_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "w.bin").write_bytes(b"")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755


def test_a_partial_folder_is_kept_for_its_own_run_and_discarded_for_another(tmp_path, caplog):
    import logging

    from quagmire.io import claim_partial, partial_dir

    folder = partial_dir(tmp_path / "out.parquet")
    assert folder.name == "out.parquet.partial"
    claim_partial(folder, {"sha256": "a", "settings": {"lr": 1}}, "progress")
    (folder / "step-1").write_text("done")
    claim_partial(folder, {"sha256": "a", "settings": {"lr": 1}}, "progress")
    assert (folder / "step-1").exists()  # same run: progress kept
    with caplog.at_level(logging.WARNING, logger="quagmire"):
        claim_partial(folder, {"sha256": "b", "settings": {"lr": 2}}, "progress")
    assert not (folder / "step-1").exists() and "changed: settings" in caplog.text
    caplog.clear()
    empty = tmp_path / "empty.partial"
    (empty / "trainer").mkdir(parents=True)  # created by a trainer before any progress: no warning
    with caplog.at_level(logging.WARNING, logger="quagmire"):
        claim_partial(empty, {"sha256": "c"}, "progress")
    assert caplog.text == "" and not (empty / "trainer").exists()
