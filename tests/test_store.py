"""The store layer: reading writes nothing, even on a store that was moved and that the user may
only read; the maintenance (relocation, ending the runs of dead processes) is done where a command
writes. On synthetic stores: nothing here trains."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from synthetic import fake_study

from toolkit import names
from toolkit.config import RunConfig
from toolkit.store import location, reading, writing


def dead_pid() -> str:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return str(gone.pid)  # a pid that no longer exists in this process table


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def moved_store(tmp_path, monkeypatch) -> tuple[Path, str, str]:
    """A study's store, made in one folder and then moved: (its new folder, the id of a run with an
    artifact, the id of a run left RUNNING by a process that died)."""
    original = tmp_path / "original" / "mlruns"
    original.mkdir(parents=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{original / 'mlflow.db'}")
    runs = [(RunConfig(model=m, seed=s), {"test/recon": 200.0 + s}) for m in ("vae", "ae") for s in (42, 43, 44)]
    fake_study("moved", runs)
    [with_file, *_] = reading.load_runs("moved")["run_id"]
    writing.Run(with_file).log_json({"logged": "before the move"}, "note.json")
    orphan = writing.new_run("moved", "orphan", {**writing.process_tags(), names.PID: dead_pid()}).run_id
    moved = tmp_path / "elsewhere" / "mlruns"
    shutil.move(original.parent, moved.parent)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{moved / 'mlflow.db'}")
    return moved, with_file, orphan


def test_reading_a_moved_store_finds_its_files_and_writes_nothing(tmp_path, monkeypatch, capsys):
    moved, with_file, orphan = moved_store(tmp_path, monkeypatch)
    before = digests(moved)
    assert reading.read_artifact(with_file, "note.json") == b'{\n  "logged": "before the move"\n}'
    assert reading.existing_run(orphan).status == "RUNNING"  # judged only where a command writes
    assert len(reading.load_runs("moved")) == 8 and reading.experiments().keys() == {"moved"}
    assert digests(moved) == before and "note:" not in capsys.readouterr().err
    writing.writer()  # a command that writes: the store is pointed at its own files, the orphan ended
    assert reading.existing_run(orphan).status == "FAILED"
    assert f"note: this store was at {tmp_path / 'original' / 'mlruns'};" in capsys.readouterr().err
    assert reading.read_artifact(with_file, "note.json").startswith(b"{")
    assert location.reader().get_run(with_file).info.artifact_uri.startswith(str(moved))


def test_a_report_on_a_moved_store_the_user_may_only_read_changes_nothing(tmp_path, monkeypatch):
    """Run as root (CI), the store is given to `nobody` and the report runs without root's power to
    override file permissions (setpriv drops CAP_DAC_OVERRIDE), as a user who may only read it."""
    moved, with_file, orphan = moved_store(tmp_path, monkeypatch)
    unprivileged = []
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "nobody", str(moved)], check=True)
        drop = "-dac_override,-dac_read_search"
        unprivileged = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--"]
    for path in [moved, *moved.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    before = digests(moved)
    out = tmp_path / "report"
    read = (
        "from toolkit.store import reading; from toolkit.reports import write_report; "
        f"print(reading.read_artifact('{with_file}', 'note.json').decode().split()[-2]); "
        f"print(reading.existing_run('{orphan}').status); "
        f"write_report('ae-vs-vae', 'moved', out='{out}')"
    )
    result = subprocess.run(
        [*unprivileged, sys.executable, "-c", read], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['move"', "RUNNING"] and (out / "README.md").is_file()
    assert digests(moved) == before
