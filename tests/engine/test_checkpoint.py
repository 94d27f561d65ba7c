"""SafeCheckpointer: atomic checkpoint files, resume past a corrupt newest checkpoint, unreadable
files named."""
import logging
import os

import pytest
import torch
from torch import nn

from lt_det.engine.checkpoint import SafeCheckpointer


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
