"""Members of a group trained as one stacked model against the same runs trained alone (`train.fit`)."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from test_train import config, synthetic_splits, timeless

import toolkit.group
from toolkit import names
from toolkit.evaluate import elbo_metrics
from toolkit.group import Member, fit_group, group_key
from toolkit.models import build
from toolkit.train import TrainingDiverged, fit

# Members differ in everything a study varies but the shapes; the grid of the issue: mixed β,
# warm-up and free bits, plus learning rate and seed.
SETTINGS = [
    {"beta": 0.5, "seed": 1},
    {"beta": 4.0, "warmup_epochs": 2, "seed": 2},
    {"beta": 1.0, "free_bits": 0.25, "lr": 3e-3, "seed": 3},
    {"beta": 2.0, "warmup_epochs": 1, "free_bits": 0.1, "seed": 1},
]
# How far a member's metrics may lie from its lone run's: 1e-4 of the metric or 1e-4 of the
# epoch's validation loss (in nats), whichever is larger. Its sums run in another order (batched
# matrix products, Adam written out), so each step moves its weights by a few float32 roundings
# more or less, and training carries these on, the more where units sit on the edge of collapse.
# Measured for these runs, over 3 epochs: at most 4e-5 of a metric, or 8e-3 nats on a nearly
# collapsed unit's KL of 0.4 nats (2e-5 of that epoch's loss, 400 nats; hidden 32-16, dynamic
# binarisation). The seed spread the reports measure is 1e-3 to 1e-2 of the loss: ten times the
# tolerance and more.
TOLERANCE = 1e-4


def alone(cfg, splits, callbacks=()):
    model = build(cfg, torch.device("cpu"))
    return model, fit(model, splits, cfg, callbacks, quiet=True)


def assert_close(grouped: list[dict], lone: list[dict]):
    assert len(grouped) == len(lone)
    for epoch_grouped, epoch_lone in zip(timeless(grouped), timeless(lone)):
        assert epoch_grouped.keys() == epoch_lone.keys()
        scale = abs(epoch_lone[names.VAL_LOSS] if names.VAL_LOSS in epoch_lone else epoch_lone[names.LOSS])
        for key, value in epoch_lone.items():
            assert epoch_grouped[key] == pytest.approx(value, rel=TOLERANCE, abs=TOLERANCE * scale), key


@pytest.mark.parametrize(
    "shared",
    [
        {},
        {"likelihood": "gaussian", "decoder_scale": "learned"},
        {"binarize": "dynamic", "hidden": (32, 16)},
        {"model": "ae"},
        {"precision": "bf16"},
    ],
    ids=["bernoulli", "learned-sigma", "binarized-two-layers", "ae", "bf16"],
)
def test_members_train_to_the_numbers_of_their_runs_alone(shared):
    splits = synthetic_splits()
    configs = [config(**shared, **setting) for setting in SETTINGS]
    members = fit_group([Member(c) for c in configs], splits)
    for member, cfg in zip(members, configs):
        model, result = alone(cfg, splits)
        assert member.error is None
        assert_close(member.result.history, result.history)
        assert member.result.best_epoch == result.best_epoch
        assert_close([elbo_metrics(member.model, splits.test, cfg)], [elbo_metrics(model, splits.test, cfg)])


def test_a_pruned_an_early_stopped_and_a_diverging_member_stop_alone_and_the_others_go_on():
    splits = synthetic_splits()
    healthy = config(epochs=5, beta=1.0, seed=5)
    early = config(epochs=5, patience=1, lr=0.1, seed=6)  # its validation loss rises at epoch 4
    diverging = config(epochs=5, lr=1e6, seed=7)
    pruned = config(epochs=5, beta=2.0, seed=8)

    class Pruned(Exception):
        pass

    def prune_at_two(epoch, metrics):
        if epoch == 2:
            raise Pruned

    members = fit_group(
        [Member(healthy), Member(early), Member(diverging), Member(pruned, callbacks=[prune_at_two])], splits
    )
    by_config = {m.config: m for m in members}
    assert by_config[healthy].error is None and len(by_config[healthy].result.history) == 5
    assert_close(by_config[healthy].result.history, alone(healthy, splits)[1].history)
    _, lone_early = alone(early, splits)
    assert lone_early.stopped_early and by_config[early].result.stopped_early
    assert_close(by_config[early].result.history, lone_early.history)
    assert isinstance(by_config[diverging].error, TrainingDiverged)
    with pytest.raises(TrainingDiverged):
        alone(diverging, splits)
    assert isinstance(by_config[pruned].error, Pruned) and len(by_config[pruned].result.history) == 2
    assert_close(by_config[pruned].result.history, alone(replace(pruned, epochs=2), splits)[1].history)


def test_a_member_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one_and_alone_as_well():
    """Each member's checkpoint is its lone run's training state: a group resumes from them, and
    `train.fit` resumes one of them alone, both to the numbers of the run never stopped."""
    splits = synthetic_splits()
    configs = [config(epochs=3, **setting) for setting in SETTINGS[:2]]
    states = {c: [] for c in configs}

    def keep(cfg):
        return lambda state: states[cfg].append(torch.load(_saved(state), weights_only=False))

    fit_group([Member(c, checkpoint=keep(c)) for c in configs], splits)
    resumed = fit_group([Member(c, resume=states[c][0]) for c in configs], splits)
    for member, cfg in zip(resumed, configs):
        assert_close(member.result.history, alone(cfg, splits)[1].history)
    model = build(configs[1], torch.device("cpu"))
    alone_again = fit(model, splits, configs[1], quiet=True, resume=states[configs[1]][1])
    assert_close(alone_again.history, alone(configs[1], splits)[1].history)


def _saved(state: dict):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_members_group_only_with_runs_of_their_shape():
    base = config()
    assert group_key(replace(base, beta=4, warmup_epochs=3, free_bits=1, lr=0.1, seed=9, epochs=7)) == group_key(base)
    for different in ({"latent_dim": 8}, {"hidden": (64,)}, {"model": "ae"}, {"binarize": "dynamic"}):
        assert group_key(replace(base, **different)) != group_key(base)
    assert group_key(replace(base, architecture="conv")) is None
    with pytest.raises(ValueError, match="group_key"):
        fit_group([Member(base), Member(replace(base, latent_dim=8))], synthetic_splits())


def test_a_members_epoch_seconds_are_its_share_of_the_training_pass_and_its_own_validation(monkeypatch):
    # the clock's readings: the training pass takes 8 s, then the four members' validations 1 to 4 s
    readings = iter([0.0, 8.0, 10.0, 11.0, 11.0, 13.0, 13.0, 16.0, 16.0, 20.0])
    monkeypatch.setattr(toolkit.group, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    members = fit_group([Member(config(epochs=1, seed=s)) for s in (1, 2, 3, 4)], synthetic_splits())
    assert [m.result.history[0][names.EPOCH_SECONDS] for m in members] == [3.0, 4.0, 5.0, 6.0]
