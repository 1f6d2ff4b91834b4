"""The inference output folder: one run at a time (lock), outputs published together, earlier outputs kept."""

import logging
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
from ignite.engine import Engine, Events

from cxrkd_monai.handlers.output_folder import InferenceOutputFolder
from cxrkd_monai.utils.folder_lock import FolderInUseError, FolderLock


def _writing_engine(folder: InferenceOutputFolder, names: list[str], fail_after_maps: bool = False) -> Engine:
    """An engine that writes a map per iteration into the staging folder and the CSV at completion."""
    engine = Engine(lambda e, batch: None)

    @engine.on(Events.ITERATION_COMPLETED)
    def _write_map(e):
        (folder.staging_dir / "maps").mkdir(exist_ok=True)
        (folder.staging_dir / "maps" / f"{names[e.state.iteration - 1]}.nii.gz").write_text("map")
        if fail_after_maps and e.state.iteration == len(names):
            raise RuntimeError("out of memory")

    @engine.on(Events.COMPLETED)
    def _write_csv(e):
        (folder.staging_dir / "predictions.csv").write_text("image\n" + "\n".join(names) + "\n")

    return engine


def _tree(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def _run(folder: InferenceOutputFolder, names: list[str], **kwargs) -> None:
    engine = _writing_engine(folder, names, **kwargs)
    # a MONAI workflow's run() takes no arguments: it runs over its own data loader
    folder.run(SimpleNamespace(run=lambda: engine.run(names, max_epochs=1)))


def test_outputs_appear_together_and_a_rerun_sets_the_previous_ones_aside(tmp_path):
    folder = InferenceOutputFolder(tmp_path / "out")
    _run(folder, ["a", "b"])
    assert _tree(tmp_path / "out") == ["maps", "maps/a.nii.gz", "maps/b.nii.gz", "predictions.csv"]

    _run(InferenceOutputFolder(tmp_path / "out"), ["c"])
    tree = _tree(tmp_path / "out")
    (stamp,) = {entry.split("/")[1] for entry in tree if entry.startswith("previous/")}
    assert tree == [
        "maps",
        "maps/c.nii.gz",
        "predictions.csv",
        "previous",
        f"previous/{stamp}",
        f"previous/{stamp}/maps",
        f"previous/{stamp}/maps/a.nii.gz",
        f"previous/{stamp}/maps/b.nii.gz",
        f"previous/{stamp}/predictions.csv",
    ]
    assert (tmp_path / "out" / "predictions.csv").read_text() == "image\nc\n"

    _run(InferenceOutputFolder(tmp_path / "out"), ["d"])  # a third run within the same second gets its own folder
    assert len(list((tmp_path / "out" / "previous").iterdir())) == 2


def test_a_failed_run_leaves_no_maps_and_no_stale_predictions(tmp_path):
    out = tmp_path / "out"
    _run(InferenceOutputFolder(out), ["a"])
    with pytest.raises(RuntimeError, match="out of memory"):
        _run(InferenceOutputFolder(out), ["b", "c"], fail_after_maps=True)
    assert sorted(entry.name for entry in out.iterdir()) == ["previous"]  # the lock is released, staging removed
    (previous,) = (out / "previous").iterdir()
    assert (previous / "predictions.csv").read_text() == "image\na\n"


def test_a_live_lock_refuses_a_second_run_and_touches_nothing(tmp_path):
    out = tmp_path / "out"
    _run(InferenceOutputFolder(out), ["a"])
    before = _tree(out)
    with FolderLock(out):
        with pytest.raises(FolderInUseError, match=rf"in use by another run \(pid {os.getpid()} on "):
            _run(InferenceOutputFolder(out), ["b"])
        assert _tree(out) == sorted([*before, ".lock"])
    assert _tree(out) == before


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    (tmp_path / ".lock").write_text(f"{dead_pid} {socket.gethostname()}\n")
    lock = FolderLock(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cxrkd_monai.utils.folder_lock"):
        lock.acquire()
    assert f"pid {dead_pid} no longer runs" in caplog.text
    assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_a_lock_from_another_host_is_respected(tmp_path):
    (tmp_path / ".lock").write_text("1 some-other-host\n")
    with pytest.raises(FolderInUseError, match="pid 1 on some-other-host"):
        FolderLock(tmp_path).acquire()


def test_a_run_that_writes_nothing_says_so_and_logs_no_empty_list(tmp_path, caplog):
    folder = InferenceOutputFolder(tmp_path / "out")
    with caplog.at_level(logging.INFO, logger="cxrkd_monai.handlers.output_folder"):
        folder.run(SimpleNamespace(run=lambda: None))
    assert [record.getMessage() for record in caplog.records] == [f"The run wrote no outputs to {tmp_path / 'out'}"]
    assert caplog.records[0].levelno == logging.WARNING
    assert _tree(tmp_path / "out") == []
