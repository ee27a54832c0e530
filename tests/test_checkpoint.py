import json
import math
import os

import pytest
import torch

from vi_vae import InputError
from vi_vae.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKSUM_FIELD,
    atomic_write_bytes,
    atomic_write_json,
    check_json_checksum,
    content_checksum,
    load_checkpoint,
    read_json,
    remove_stale_temporaries,
    save_checkpoint,
    tensor_checksum,
)
from vi_vae.errors import UnverifiedCheckpointWarning, UnverifiedFileWarning


def test_round_trip(tmp_path):
    state = {"epoch": 3, "params": {"w": torch.arange(4.0)}, "history": [{"loss": 1.5}]}
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    loaded = load_checkpoint(tmp_path / "checkpoint.pt")
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["params"]["w"], torch.arange(4.0))
    assert loaded["history"] == [{"loss": 1.5}]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})

    def broken_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"],
    ids=["empty", "garbage", "truncated"],
)
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match="corrupt or not a vi_vae checkpoint"):
        load_checkpoint(path)


def test_truncated_real_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"params": {"w": torch.randn(100, 100)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt"):
        load_checkpoint(path)


MARKER = {"path": None}


def _run_payload(path):
    with open(path, "w") as handle:
        handle.write("code ran")


class Payload:
    """Unpickling this object calls a function: what a malicious checkpoint does."""

    def __reduce__(self):
        return (_run_payload, (MARKER["path"],))


def test_pickled_code_is_never_executed(tmp_path):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "marker"
    MARKER["path"] = str(marker)
    torch.save({"format": "vi_vae-checkpoint-1", "payload": Payload()}, path)
    with pytest.raises(InputError, match="corrupt or not a vi_vae checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_foreign_tensor_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="not a vi_vae checkpoint"):
        load_checkpoint(path)


def test_json_helpers(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert read_json(tmp_path / "a.json") == {"x": 1}
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        read_json(tmp_path / "b.json")
    with pytest.raises(InputError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    atomic_write_bytes(tmp_path / "sub" / "c.bin", b"abc")
    assert (tmp_path / "sub" / "c.bin").read_bytes() == b"abc"
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_flipped_bytes_in_a_tensor_are_refused_by_the_checksum(tmp_path):
    # issue 13: a damaged checkpoint used to load and evaluate to a wrong number
    path = tmp_path / "checkpoint.pt"
    weights = torch.linspace(-1, 1, 10_000)
    save_checkpoint(path, {"params": {"w": weights}})
    data = bytearray(path.read_bytes())
    start = bytes(data).find(weights[:4].numpy().tobytes())
    assert start > 0
    data[start + 4 * 5000 + 2] ^= 0x10  # one bit of one float in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its checksum"):
        load_checkpoint(path)


def test_checksum_covers_names_and_values():
    first = tensor_checksum({"a": torch.zeros(3), "b": [torch.ones(2)]})
    assert first == tensor_checksum({"b": [torch.ones(2)], "a": torch.zeros(3)})
    assert first != tensor_checksum({"a": torch.zeros(3), "b": [torch.ones(2) * 2]})
    assert first != tensor_checksum({"c": torch.zeros(3), "b": [torch.ones(2)]})


def test_files_get_the_umask_permissions_not_0600(tmp_path):
    # issue 13: JSON and checkpoints were created 0600 while figures were 0644
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600


def test_stale_temporaries_of_our_naming_are_removed_and_nothing_else(tmp_path):
    ours = [tmp_path / ".checkpoint.pt.k2j4_x9a.tmp", tmp_path / ".history.csv.abcdefgh.tmp"]
    theirs = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".x.short.tmp"]
    for path in ours + theirs:
        path.write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(ours)
    assert all(path.exists() for path in theirs)


def test_a_write_replaces_a_symbolic_link_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(outside)
    atomic_write_json(link, {"a": 1})
    assert outside.read_text() == "keep"
    assert not link.is_symlink() and read_json(link) == {"a": 1}


def test_json_writes_nan_and_infinities_as_strings_strict_json_readers_accept(tmp_path):
    # null would read back as NaN whatever was written: a -inf log-likelihood came back NaN
    atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, -math.inf, math.inf]})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"a": "nan", "b": [1.0, "-inf", "inf"]}
    assert "NaN" not in text and "Infinity" not in text  # Python's non-standard spellings


def _flip_a_weight(data: bytearray, weights: torch.Tensor) -> None:
    start = bytes(data).find(weights[:4].numpy().tobytes())
    assert start > 0
    data[start + 4 * (len(weights) // 2) + 2] ^= 0x10  # one bit of one float in the middle


@pytest.mark.parametrize("older", ["vi_vae-checkpoint-1", "vi_vae-checkpoint-2"])
def test_a_changed_format_name_does_not_turn_the_checksum_off(tmp_path, older):
    # issue 20 item 11: "-2" -> "-1" in the file loaded it as the unchecksummed format, and
    # flipped tensor bytes then evaluated to log p(x) = -5.7e37
    path = tmp_path / "checkpoint.pt"
    weights = torch.linspace(-1, 1, 10_000)
    save_checkpoint(path, {"epoch": 1, "params": {"w": weights}})
    data = bytearray(path.read_bytes())
    assert data.count(CHECKPOINT_FORMAT.encode()) == 1 and len(older) == len(CHECKPOINT_FORMAT)
    data = bytearray(bytes(data).replace(CHECKPOINT_FORMAT.encode(), older.encode()))
    _flip_a_weight(data, weights)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="older format|does not match its checksum"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="does not match its checksum"):
        load_checkpoint(path, allow_unverified=True)  # format 3's checksum is no format 2 one


@pytest.mark.parametrize(
    ("field", "value"),
    [("epoch", 30), ("best_epoch", 1), ("best_score", -1.0), ("history", [{"loss": -1.5}])],
)
def test_non_tensor_fields_are_covered_by_the_checksum(tmp_path, field, value):
    # issue 20 item 12: an edited epoch, best epoch or history appeared in the report as fact
    path = tmp_path / "checkpoint.pt"
    state = {
        "epoch": 3,
        "best_epoch": 2,
        "best_score": -100.25,
        "history": [{"loss": 1.5}],
        "params": {"w": torch.arange(4.0)},
    }
    save_checkpoint(path, state)
    stored = torch.load(path, weights_only=True)
    assert stored[field] != value
    stored[field] = value
    torch.save(stored, path)  # the same format name and the old checksum
    with pytest.raises(InputError, match="does not match its checksum"):
        load_checkpoint(path)


def test_content_checksum_covers_every_leaf_and_the_format():
    state = {"format": CHECKPOINT_FORMAT, "epoch": 3, "h": [{"a": 1.0}], "w": torch.zeros(2)}
    first = content_checksum(state)
    assert first == content_checksum(dict(reversed(state.items())))
    for changed in (
        {**state, "format": "vi_vae-checkpoint-1"},
        {**state, "epoch": 3.0},  # the same number, another type
        {**state, "h": [{"a": 1.0000000000000002}]},
        {**state, "h": [{"a": 1.0}, {}]},
        {**state, "w": torch.zeros(2, dtype=torch.float64)},
        {**state, "extra": None},
    ):
        assert content_checksum(changed) != first


def test_format_1_loads_only_when_asked_for_and_format_2_with_a_warning(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "vi_vae-checkpoint-1", "epoch": 2, "params": {}}, path)
    with pytest.raises(InputError, match="older format 'vi_vae-checkpoint-1'"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_unverified=True)["epoch"] == 2
    weights = torch.linspace(-1, 1, 10_000)
    content = {"epoch": 2, "params": {"w": weights}}
    old = {"format": "vi_vae-checkpoint-2", "checksum": tensor_checksum(content), **content}
    torch.save(old, path)
    # format 2 (vi_vae 0.2, today's run directories) still loads: its weights are checked
    with pytest.warns(UnverifiedCheckpointWarning, match="epoch, best epoch and history"):
        assert torch.equal(load_checkpoint(path)["params"]["w"], weights)
    data = bytearray(path.read_bytes())
    _flip_a_weight(data, weights)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its checksum"):
        load_checkpoint(path)  # format 2's tensor checksum still holds


def test_writing_over_a_directory_is_an_input_error(tmp_path):
    # issue 20 item 17: RUN/samples.png being a directory gave an IsADirectoryError traceback
    (tmp_path / "samples.png").mkdir()
    with pytest.raises(InputError, match="samples.png: it is a directory"):
        atomic_write_bytes(tmp_path / "samples.png", b"png")
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_checksummed_json_reads_back_as_written_and_refuses_a_change(tmp_path):
    # int keys, tuples and NaN come back as strings, lists and "nan": the checksum is over
    # the content as it reads back, so an untouched file matches
    data = {"mean": -91.25, "points": 3, "by_k": {1: (0.1, float("nan"))}, "name": "elbo"}
    atomic_write_json(tmp_path / "m.json", data, checksum=True)
    stored = read_json(tmp_path / "m.json")
    assert list(stored) == [*data, CHECKSUM_FIELD]
    content = check_json_checksum(tmp_path / "m.json", stored, "write it again")
    assert content == {"mean": -91.25, "points": 3, "by_k": {"1": [0.1, "nan"]}, "name": "elbo"}
    assert stored[CHECKSUM_FIELD] == content_checksum(content)  # the checkpoints' checksum
    for key, value in [("mean", -91.2500001), ("points", 3.0), ("name", "iwae")]:
        with pytest.raises(InputError, match=r"m\.json does not match its checksum.*write it"):
            check_json_checksum(tmp_path / "m.json", {**stored, key: value}, "write it again")


def test_a_json_without_checksum_warns_and_a_non_object_is_refused(tmp_path):
    with pytest.warns(UnverifiedFileWarning, match=r"old\.json has no checksum"):
        assert check_json_checksum(tmp_path / "old.json", {"mean": 1.0}, "") == {"mean": 1.0}
    with pytest.raises(InputError, match=r"list\.json is not a JSON object; write it again"):
        check_json_checksum(tmp_path / "list.json", [1.0], "write it again")
    for data in ([1.0], {CHECKSUM_FIELD: "mine"}):  # the writer's own misuse: a bug, not input
        with pytest.raises(ValueError, match="a dict without 'checksum'"):
            atomic_write_json(tmp_path / "bad.json", data, checksum=True)
