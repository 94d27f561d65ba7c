"""SafeCheckpointer: atomic checkpoint files, resume past a corrupt newest checkpoint, unreadable
files named."""
import logging
import os

import pytest
import torch
from torch import nn

from lt_det.data.resumable import StreamState
from lt_det.engine.checkpoint import SafeCheckpointer, UnreadableCheckpointError, check_checkpoint_readable


def checkpointer(tmp_path, value):
    model = nn.Linear(2, 1)
    nn.init.constant_(model.weight, value)
    return SafeCheckpointer(model, str(tmp_path), save_to_disk=True), model


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_and_tag(tmp_path, monkeypatch):
    c, _ = checkpointer(tmp_path, 1.0)
    c.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def torch_save_dies_midway(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torch_save_dies_midway)
    with pytest.raises(OSError, match="No space left"):
        c.save("model_final", iteration=3)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]  # no temporary left


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog, damage):
    c, _ = checkpointer(tmp_path, 1.0)
    c.save("model_0000001", iteration=1)
    os.utime(tmp_path / "model_0000001.pth", (1, 1))  # older than the next one
    c.model.weight.data.fill_(3.0)
    c.save("model_0000003", iteration=3)
    newest = tmp_path / "model_0000003.pth"
    newest.write_bytes(newest.read_bytes()[: 100] if damage == "truncate" else b"")

    fresh, model = checkpointer(tmp_path, 0.0)
    with caplog.at_level(logging.WARNING):
        extra = fresh.resume_or_load("", resume=True)
    assert extra["iteration"] == 1 and torch.all(model.weight == 1.0)
    assert f"Checkpoint {newest} is unreadable" in caplog.text
    assert f"Resuming from {tmp_path / 'model_0000001.pth'}" in caplog.text


@pytest.mark.parametrize("other", ["stream_state_rank1.pth", "stage1_model_final.pth"])
def test_resume_falls_back_to_model_checkpoints_only(tmp_path, other):
    """Exact resume writes each process's stream state next to the crash checkpoint; a stage-1
    model may be copied there: neither is a checkpoint of this run to resume from."""
    c, _ = checkpointer(tmp_path, 1.0)
    c.save("model_0000001", iteration=1)
    os.utime(tmp_path / "model_0000001.pth", (1, 1))  # older than the rest
    if other.startswith("stream_state"):  # as ExactResumeHook writes it
        torch.save({"iteration": 3, "state": StreamState(8, [9]).to_dict()}, tmp_path / other)
    else:
        torch.save({"model": {"weight": torch.full((1, 2), 9.0), "bias": torch.zeros(1)}, "iteration": 500},
                   tmp_path / other)
    c.model.weight.data.fill_(3.0)
    c.save("model_crash", iteration=3)
    (tmp_path / "model_crash.pth").write_bytes(b"")  # the tagged, newest checkpoint is unreadable

    fresh, model = checkpointer(tmp_path, 0.0)
    extra = fresh.resume_or_load("", resume=True)
    assert extra["iteration"] == 1 and torch.all(model.weight == 1.0)


@pytest.mark.parametrize("full", [True, False])
def test_the_readability_check_names_a_truncated_or_empty_file(tmp_path, full):
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, good)
    check_checkpoint_readable(str(good), full=full)
    for name, data in [("truncated.pth", good.read_bytes()[:-20]), ("empty.pth", b""), ("zeros.pth", b"\0" * 10)]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnreadableCheckpointError, match=f"Checkpoint {tmp_path / name} is unreadable"):
            check_checkpoint_readable(str(tmp_path / name), full=full)


def test_the_cheap_readability_check_maps_the_tensors_instead_of_reading_them(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    calls, load = [], torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("mmap", False))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    check_checkpoint_readable(str(path), full=False)
    check_checkpoint_readable(str(path))
    assert calls == [True, False]


def test_no_readable_checkpoint_is_an_error_naming_the_folder(tmp_path):
    c, _ = checkpointer(tmp_path, 1.0)
    c.save("model_final", iteration=1)
    (tmp_path / "model_final.pth").write_bytes(b"")
    with pytest.raises(RuntimeError, match=f"No readable checkpoint in {tmp_path} to resume from"):
        checkpointer(tmp_path, 0.0)[0].resume_or_load("", resume=True)


def test_loading_an_unreadable_weights_file_names_it(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(RuntimeError, match=f"Checkpoint {bad} is unreadable"):
        checkpointer(tmp_path / "out", 0.0)[0].load(str(bad))


def test_a_good_resume_is_fvcores(tmp_path):
    c, _ = checkpointer(tmp_path, 2.0)
    c.save("model_0000004", iteration=4)
    fresh, model = checkpointer(tmp_path, 0.0)
    assert fresh.resume_or_load("", resume=True)["iteration"] == 4 and torch.all(model.weight == 2.0)
    assert fresh.resume_or_load("", resume=False) == {}  # no weights path: nothing loaded
