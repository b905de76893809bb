"""wq.quantize_tree: the CLI's tree mode through the library, same bytes, resume, Ctrl-C, shards."""

import os
import signal
import subprocess
import time

import pytest
import torch

import wq

WQ_GPU = os.environ.get("WQ_GPU", "wq-gpu")


def model_folder(root, files=3):
    """A model folder: .pt state dicts in a subfolder, a config beside them."""
    torch.manual_seed(5)
    (root / "sub").mkdir(parents=True)
    for i in range(files):
        torch.save({"layer.weight": torch.randn(96, 160), "layer.bias": torch.randn(96)}, root / "sub" / f"m{i}.pt")
    (root / "config.json").write_text('{"model_type": "toy"}\n')
    return root


def outputs(folder):
    """Every file under `folder` but the journals, as {relative path: bytes}."""
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if not name.startswith(".wq-journal"):
                path = os.path.join(dirpath, name)
                found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


def test_writes_the_clis_tree_and_resumes(tmp_path):
    src = model_folder(tmp_path / "in")
    report = wq.quantize_tree(src, tmp_path / "py", bits=4, granularity="group", group_size=32, jobs=2)
    subprocess.run([WQ_GPU, "quantize", str(src), "-o", str(tmp_path / "cli"), "--bits", "4", "--granularity",
                    "group", "--group-size", "32", "-q"], check=True)
    assert outputs(tmp_path / "py") == outputs(tmp_path / "cli")
    assert sorted(outputs(tmp_path / "py")) == ["config.json"] + [f"sub/m{i}.wq.safetensors" for i in range(3)]
    rows = {f["output"]: f for f in report["files"]}
    assert rows["config.json"]["action"] == "copied"
    assert rows["sub/m0.wq.safetensors"]["action"] == "quantized"
    assert rows["sub/m0.wq.safetensors"]["encoded_tensors"] == 1 and rows["sub/m0.wq.safetensors"]["sqnr_min_db"] > 10
    assert report["settings"]["bits"] == 4 and report["totals"]["written"] == 4
    assert os.path.basename(report["journal"]) == ".wq-journal.jsonl"
    # The same call again: everything is up to date; force=True redoes it, to the same bytes.
    again = wq.quantize_tree(src, tmp_path / "py", bits=4, granularity="group", group_size=32)
    assert {f["action"] for f in again["files"]} == {"up to date"} and again["totals"]["up_to_date"] == 4
    forced = wq.quantize_tree(src, tmp_path / "py", bits=4, granularity="group", group_size=32, force=True)
    assert {f["action"] for f in forced["files"]} == {"quantized", "copied"}
    assert outputs(tmp_path / "py") == outputs(tmp_path / "cli")
    # Other settings redo the containers, not the copy.
    other = wq.quantize_tree(src, tmp_path / "py", bits=8)
    assert {f["output"]: f["action"] for f in other["files"]} == {
        "config.json": "up to date", **{f"sub/m{i}.wq.safetensors": "quantized" for i in range(3)}}


def test_dry_run_writes_nothing(tmp_path):
    src = model_folder(tmp_path / "in", files=2)
    plan = wq.quantize_tree(src, tmp_path / "out", bits=4, dry_run=True)
    assert not (tmp_path / "out").exists()
    assert [(f["action"], f["output"]) for f in plan["files"]] == [
        ("copy", "config.json"), ("quantize", "sub/m0.wq.safetensors"), ("quantize", "sub/m1.wq.safetensors")]
    assert all(f["output_bytes"] < f["input_bytes"] for f in plan["files"] if f["action"] == "quantize")


def test_progress_covers_the_whole_tree(tmp_path):
    src = model_folder(tmp_path / "in")
    seen = []
    wq.quantize_tree(src, tmp_path / "out", bits=4, jobs=1, progress=lambda done, total, name: seen.append((done, total)))
    total = seen[-1][1]
    assert total == sum(os.path.getsize(p) for p in (src / "config.json", *(src / "sub").iterdir()))
    assert seen[-1][0] == total and all(done <= total for done, _ in seen)


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_cleanly_and_the_same_call_resumes(tmp_path, jobs):
    src = model_folder(tmp_path / "in", files=4)
    calls = []

    def interrupt(done, total, name):
        calls.append(name)
        time.sleep(0.05)  # a run long enough that stopping early shows
        if len(calls) == 3:
            # As a terminal would: Python's handler flags it. With 2 jobs this runs on a job's
            # thread, where Python does not look: the waiting caller does.
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        wq.quantize_tree(src, tmp_path / "out", bits=4, jobs=jobs, progress=interrupt)
    journaled = (tmp_path / "out" / ".wq-journal.jsonl").read_text().splitlines()
    assert len(journaled) < 5  # stopped before the end
    names = [n for n in os.listdir(tmp_path / "out" / "sub")] if (tmp_path / "out" / "sub").exists() else []
    assert not [n for n in names if ".wq-tmp." in n]  # nothing half-written
    wq.quantize_tree(src, tmp_path / "out", bits=4, jobs=jobs)
    wq.quantize_tree(src, tmp_path / "whole", bits=4)
    assert outputs(tmp_path / "out") == outputs(tmp_path / "whole")


def test_shards_split_the_work_between_calls(tmp_path):
    src = model_folder(tmp_path / "in", files=4)
    first = wq.quantize_tree(src, tmp_path / "out", bits=4, shard=(0, 2))
    second = wq.quantize_tree(src, tmp_path / "out", bits=4, shard="1/2")
    done = [f["output"] for f in first["files"]] + [f["output"] for f in second["files"]]
    assert sorted(done) == sorted(outputs(tmp_path / "out")) and len(done) == 5
    assert os.path.basename(first["journal"]) == ".wq-journal.shard-0-of-2.jsonl"
    with pytest.raises(wq.UsageError, match="shard '3' of '2'"):
        wq.quantize_tree(src, tmp_path / "out", shard="3/2")


def test_errors_name_the_file_and_the_keyword_that_helps(tmp_path):
    src = model_folder(tmp_path / "in", files=1)
    (src / "training_args.bin").write_bytes(b"\x80\x02}q\x00.")  # looks like a pickle, is no state dict
    torch.save({"optimizer": "not tensors"}, src / "extra.pt")
    with pytest.raises(wq.BadFormatError, match="copy_unreadable=True") as e:
        wq.quantize_tree(src, tmp_path / "out", bits=4)
    assert "extra.pt" in str(e.value) or "training_args.bin" in str(e.value)
    assert not (tmp_path / "out").exists()
    report = wq.quantize_tree(src, tmp_path / "out", bits=4, copy_unreadable=True)
    assert any("copied unchanged" in note for note in report["notes"])
    with pytest.raises(wq.OutputError, match="is a file"):
        wq.quantize_tree(src, src / "config.json")
    with pytest.raises(wq.UsageError, match="to must be"):
        wq.quantize_tree(src, tmp_path / "x", to="onnx")
