"""`pipeline.train_run` and `train_group` in process: what runs leave behind in the process and the store."""

import gc
import weakref
from dataclasses import replace

from conftest import TINY
from mlflow import MlflowClient

from toolkit import names
from toolkit.pipeline import RunRequest, RunResult, train_group, train_run
from toolkit.store import reading
from toolkit.store.writing import RunStopped
from toolkit.train import TrainingDiverged


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.itself = self


def test_what_a_run_froze_and_is_garbage_now_is_collected_when_the_next_run_starts(tiny_data, store):
    held = Node()  # alive when the first run freezes what exists, as a trial's data is
    gone = weakref.ref(held)
    train_run(TINY, data_dir=tiny_data, quiet=True)
    del held
    gc.collect()
    assert gone() is not None and gc.get_freeze_count() > 0  # frozen: a collection passes it over
    train_run(TINY, data_dir=tiny_data, quiet=True)  # a study's next trial in the same process
    assert gone() is None


def test_a_group_ends_each_run_as_it_would_end_alone(tiny_data, store):
    """Three runs trained together: one healthy, one diverging, one pruned after its first epoch.
    Each is its own run, ended as alone: FINISHED with its model and metrics, FAILED with its
    reason, KILLED without checkpoints (it will not be resumed)."""

    def prune(epoch, metrics):
        raise RunStopped(f"pruned at epoch {epoch}")

    base = replace(TINY, epochs=2)
    outcomes = train_group(
        [
            RunRequest(base, "grouped"),
            RunRequest(replace(base, lr=1e6, seed=2), "grouped"),
            RunRequest(replace(base, seed=3), "grouped", callbacks=[prune]),
        ],
        data_dir=tiny_data,
    )
    healthy, diverged, pruned = outcomes
    assert isinstance(healthy, RunResult) and isinstance(diverged, TrainingDiverged)
    assert isinstance(pruned, RunStopped)
    client = MlflowClient(store)
    runs = {
        run.info.run_id: run for run in client.search_runs([client.get_experiment_by_name("grouped").experiment_id])
    }
    assert len(runs) == 3 and {run.data.tags[names.GROUP_SIZE] for run in runs.values()} == {"3"}
    assert runs[healthy.run_id].info.status == "FINISHED" and names.TEST_NEG_ELBO in runs[healthy.run_id].data.metrics
    assert names.IMAGES_NPZ in {a.path for a in client.list_artifacts(healthy.run_id)}
    assert reading.load_model(healthy.run_id)[0].latent_dim == TINY.latent_dim
    others = [run for run_id, run in runs.items() if run_id != healthy.run_id]
    assert sorted(run.info.status for run in others) == ["FAILED", "KILLED"]
    for run in others:
        assert not reading.checkpoint_paths(run.info.run_id) or run.info.status == "FAILED"
        reason = run.data.tags[names.END_REASON]
        assert ("non-finite" in reason) if run.info.status == "FAILED" else ("pruned at epoch 1" in reason)
        assert [m.step for m in client.get_metric_history(run.info.run_id, names.TRAIN_LOSS)] == (
            [1] if run.info.status == "KILLED" else []
        )


def test_a_run_records_whether_early_stopping_ended_it_or_the_epoch_limit_did(tiny_data, store):
    client = MlflowClient(store)
    stopped = train_run(replace(TINY, epochs=40, patience=1, lr=0.1), data_dir=tiny_data, quiet=True).run_id
    limited = train_run(replace(TINY, epochs=2, patience=0), data_dir=tiny_data, quiet=True).run_id
    found = {run_id: client.get_run(run_id).data.metrics for run_id in (stopped, limited)}
    assert found[stopped][names.CONVERGED] == 1 and found[stopped][names.EPOCHS_TRAINED] < 40
    assert found[limited][names.CONVERGED] == 0 and found[limited][names.EPOCHS_TRAINED] == 2
