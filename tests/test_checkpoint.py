import json
import os

import pytest
import torch

from vi_vae import InputError
from vi_vae.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    read_json,
    save_checkpoint,
)


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
