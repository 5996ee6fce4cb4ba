"""What keeps a local store sound, done only where a command opens it to write (`writing.writer`):
pointing a store that was moved or copied at its own files, and finding the runs left RUNNING by
processes that died. Reading a store never runs it."""

from __future__ import annotations

import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

from toolkit import names
from toolkit.machine import PROCESS_TABLE, process_alive

STALE_S = 600  # how long a run of another machine may be silent before it counts as dead

# Where MLflow's database records absolute artifact paths, for `relocate`.
PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def moved(directory: Path) -> bool:
    """Whether the store in `directory` records its files in another folder (it was moved or copied)."""
    old = _recorded(directory / "mlflow.db")
    return old is not None and old != str(directory)


def relocate(directory: Path):
    """Point a local store that was moved or copied to `directory` at its own artifacts, and say so.
    Without this a copy would write new artifacts into the original's folder, and a moved store
    would lose its artifacts."""
    old = _point_at(directory / "mlflow.db", directory)
    if old is not None:
        print(f"note: this store was at {old}; its artifact locations now point to {directory}", file=sys.stderr)


def _point_at(database: Path, directory: Path) -> str | None:
    """Rewrite the artifact paths `database` records under another store directory to lie under
    `directory`; the old directory, or None when there was nothing to rewrite. MLflow records
    absolute artifact paths and has no call to change them, so they are rewritten here, in its
    database (the one place the toolkit writes MLflow's schema)."""
    old = _recorded(database)
    if old is None or old == str(directory):
        return None
    with closing(sqlite3.connect(database, timeout=60)) as db, db:
        columns = {table: {row[1] for row in db.execute(f"pragma table_info({table})")} for table, _ in PATH_COLUMNS}
        for table, column in PATH_COLUMNS:
            if column in columns[table]:
                db.execute(
                    f"update {table} set {column} = ? || substr({column}, ?) where substr({column}, 1, ?) = ?",
                    (str(directory), len(old) + 1, len(old) + 1, old + "/"),
                )
    return old


def relocated_copy(directory: Path, copy: Path):
    """A copy of the moved store's database at `copy`, relocated to `directory`: what a reader
    reads, leaving the store itself as it is."""
    with closing(sqlite3.connect(_read_only(directory / "mlflow.db"), uri=True)) as source:
        with closing(sqlite3.connect(copy)) as target:
            source.backup(target)
    _point_at(copy, directory)


def _read_only(database: Path) -> str:
    """The SQLite URI that opens `database` for reading only."""
    return f"{database.resolve().as_uri()}?mode=ro"


def _recorded(database: Path) -> str | None:
    """The store directory the database's experiments were made in (None: not a store yet, or a
    damaged one, which opening it says): the toolkit puts the artifacts of experiment NAME in
    <store directory>/artifacts/NAME."""
    if not database.is_file() or database.stat().st_size == 0:
        return None
    try:
        with closing(sqlite3.connect(_read_only(database), uri=True)) as db:
            rows = db.execute("select name, artifact_location from experiments").fetchall()
    except sqlite3.DatabaseError:
        return None
    for name, location in rows:
        suffix = f"/artifacts/{name}"
        if location and location.endswith(suffix):
            return location.removesuffix(suffix)
    return None


def orphans(mlflow_client) -> dict[str, tuple[str, str]]:
    """The RUNNING runs whose process is gone (killed with SIGKILL, out of memory, power cut),
    {run id: (run name, why)}: on this machine a process that no longer exists, on another one a
    heartbeat older than STALE_S. Runs of other machines without a heartbeat (made by an older
    toolkit) are left alone."""
    experiments = [e.experiment_id for e in mlflow_client.search_experiments()]
    running = (
        mlflow_client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000) if experiments else []
    )
    return {
        run.info.run_id: (run.info.run_name, why) for run in running if (why := _orphaned(run.data.tags)) is not None
    }


def _orphaned(tags: dict[str, str]) -> str | None:
    """Why a RUNNING run with these tags has no process left, or None when it may still have one:
    its pid is looked up only in the process table it was started in (a host name alone does not
    name one: containers and cloned machines share them), any other run is judged by its heartbeat."""
    host, pid = tags.get(names.HOST), tags.get(names.PID, "0")
    if PROCESS_TABLE is not None and tags.get(names.PROCESS_TABLE) == PROCESS_TABLE:
        return None if process_alive(int(pid)) else f"its process {pid} on {host} died"
    silent = time.time() - float(tags.get(names.HEARTBEAT, "inf"))
    return f"its process {pid} on {host} sent no heartbeat for {silent / 60:.0f} minutes" if silent > STALE_S else None


def say_ended(ended: dict[str, tuple[str, str]]):
    """One line on the orphans a command ended FAILED."""
    if not ended:
        return
    listed = ", ".join(f"{name} ({run_id[:8]})" for run_id, (name, _) in list(ended.items())[:5])
    more = f" and {len(ended) - 5} more" if len(ended) > 5 else ""
    print(
        f"note: marked {len(ended)} run(s) FAILED whose process had died: {listed}{more}; "
        "`toolkit train --resume RUN_ID` continues one (a study resumes its own when rerun)",
        file=sys.stderr,
    )
