"""`study`: any Optuna study: its best trials with their params and run links, the parameter
importances, the optimisation history and, with several objectives, the Pareto front, drawn with
Optuna's own importance and matplotlib functions; the trials that did not complete, with why;
and whether the best trial is better than the others beyond the noise of its seeds."""

from __future__ import annotations

import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState

from toolkit import ToolkitError, names
from toolkit.reports.claims import Claims, sentence
from toolkit.reports.document import Document, code, escape, number
from toolkit.reports.runs import RunSet
from toolkit.reports.sections import link, provenance, run_list, settings_section
from toolkit.storage_errors import cannot_open_optuna_storage
from toolkit.store import location

BEST_SHOWN = 10
RUN_METRICS = {
    names.TEST_NEG_ELBO: "test −ELBO (nats)",
    names.TEST_RECON: "test recon (nats)",
    names.TEST_ACTIVE_UNITS: "active units",
}


def build(name: str, storage: str | None, rebuild: str) -> Document:
    url = location.existing_optuna_storage(storage)
    optuna_study = load(name, url)
    complete = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    states = pd.Series([t.state.name for t in optuna_study.trials]).value_counts()
    if not complete:
        raise ToolkitError(
            f"study {name!r} has no complete trials "
            f"({', '.join(f'{n} {s}' for s, n in sorted(states.items())) or 'no trials'})"
        )
    runs = _runs(optuna_study)
    targets = objective_names(optuna_study)
    doc = Document(f"Optuna study: {escape(name)}")
    rows = [
        ("Optuna storage", code(url)),
        ("study", code(name)),
        ("objectives", ", ".join(f"{escape(n)} ({d.name.lower()})" for n, d in zip(targets, optuna_study.directions))),
        ("trials", ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))),
    ]
    provenance(doc, runs, rebuild, rows)
    if runs is not None:
        settings_section(doc, runs, runs.columns())
    multi = len(targets) > 1
    best = (
        sorted(optuna_study.best_trials, key=lambda t: t.values)
        if multi
        else sorted(complete, key=lambda t: t.value)[:BEST_SHOWN]
    )
    seeds = optuna_study.user_attrs.get(names.SEEDS, 1)
    doc.heading("Pareto front" if multi else "Best trials")
    doc.text(
        (
            "The trials no other trial beats on every objective, by the first objective."
            if multi
            else f"The {len(best)} best complete trials, best first."
        )
        + (
            f" Each trial's objective is the mean over its {seeds} seeds (their sample standard deviation beside "
            "it); its test metrics are its first seed's run."
            if seeds > 1
            else " Each trial is one seed."
        )
    )
    shown, data = trials_table(best, targets, runs)
    doc.table("pareto_front" if multi else "best_trials", shown, data, markup=["run"])
    claims = Claims()
    doc.text(winner(claims, complete, targets[0], multi, seeds))
    claims.table(doc)
    if multi:
        doc.figure(
            "pareto_front",
            _figure(optuna.visualization.matplotlib.plot_pareto_front, optuna_study, target_names=targets),
            "Pareto front",
        )
    importances(doc, optuna_study, targets, complete)
    doc.heading("Optimisation history")
    for i, target in enumerate(targets):
        doc.figure(
            f"history_{i}",
            _figure(
                optuna.visualization.matplotlib.plot_optimization_history,
                optuna_study,
                target=_target(i, multi),
                target_name=target,
            ),
            f"history of {target}",
        )
    unfinished(doc, optuna_study)
    if runs is not None:
        run_list(doc, runs)
    return doc


def load(name: str, url: str) -> optuna.Study:
    try:
        found = optuna.get_all_study_names(storage=url)
    except Exception as exc:  # a bad URL or an unreachable server fails deep inside SQLAlchemy
        raise cannot_open_optuna_storage(url, exc) from None
    if name not in found:
        raise ToolkitError(
            f"no study {name!r} in the Optuna storage {url}; it has: {', '.join(sorted(found)) or 'none'}"
        )
    return optuna.load_study(study_name=name, storage=url)


def objective_names(optuna_study: optuna.Study) -> list[str]:
    """The names the study gave its objectives, or neutral ones for a study that gave none."""
    metrics = optuna_study.metric_names
    return list(metrics) if metrics else [f"objective {i}" for i in range(len(optuna_study.directions))]


def _runs(optuna_study: optuna.Study) -> RunSet | None:
    """The study's MLflow runs (the experiment named after it, children of its parent run), if any."""
    try:
        return RunSet(optuna_study.study_name, optuna_study.user_attrs.get(names.PARENT_RUN_ATTR))
    except ToolkitError:
        return None


def winner(claims: Claims, complete, target: str, multi: bool, seeds: int) -> str:
    """Whether the best trial beats every other complete trial, paired by seed over the values
    each seed scored, after Holm's correction; a study of one seed per trial names no winner."""
    if multi:
        return (
            "The front is drawn from each trial's mean objectives; whether a trial's place on it survives the "
            "noise of its seeds is not tested."
        )
    if seeds < 2:
        return (
            "One seed per trial: the best trial is the best of single runs and is not named a winner; another "
            "seed may reorder them. A search with `--seeds 3` scores each trial by the mean of three seeds "
            "and gives intervals."
        )
    values = {
        f"trial {t.number}": {int(seed): v for seed, v in t.user_attrs.get(names.BY_SEED, {}).items()} for t in complete
    }
    return sentence(claims.best(f"the {target}", {k: v for k, v in values.items() if v}, True))


def trials_table(trials, targets: list[str], runs: RunSet | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = sorted({p for t in trials for p in t.params})
    finals = runs.runs.set_index("run_id") if runs is not None else pd.DataFrame()
    data = pd.DataFrame(
        {
            "trial": [t.number for t in trials],
            **{target: [t.values[i] for t in trials] for i, target in enumerate(targets)},
            **(
                {"sd over seeds": [t.user_attrs[names.SEED_SD] for t in trials]}
                if all(names.SEED_SD in t.user_attrs for t in trials) and len(targets) == 1
                else {}
            ),
            **{p: [t.params.get(p, "") for t in trials] for p in params},
            "run_id": [t.user_attrs.get(names.RUN_ID, "") for t in trials],
        }
    )
    for key in RUN_METRICS:
        column = f"metrics.{key}"
        if column in finals:
            data[key] = [finals[column].get(r, float("nan")) for r in data["run_id"]]
    if runs is not None:  # of every seed's run of the trial
        data["converged"] = [runs.converged_share(t.user_attrs.get(names.RUN_IDS, {}).values()) for t in trials]
    shown = data.drop(columns=["run_id"]).astype(object)
    formats = {
        **{t: ".2f" for t in targets},
        **{p: ".4g" for p in params},
        **{k: ".1f" for k in RUN_METRICS},
        names.TEST_ACTIVE_UNITS: ".3g",
        "sd over seeds": ".2g",
    }
    for column, fmt in formats.items():
        if column in shown:
            shown[column] = [number(v, fmt) if isinstance(v, float) else v for v in shown[column]]
    shown = shown.rename(columns=RUN_METRICS)
    if runs is not None:
        shown["run"] = [link(runs, r) if r else "" for r in data["run_id"]]
    return shown, data


def importances(doc: Document, optuna_study: optuna.Study, targets: list[str], complete):
    doc.heading("Parameter importances")
    params = {p for t in complete for p in t.params}
    if len(params) < 2 or len(complete) < 2:
        doc.text(
            f"Not computed: importances need two or more parameters and complete trials "
            f"(this study has {len(params)} parameter(s), {len(complete)} complete trial(s))."
        )
        return
    multi = len(targets) > 1
    rows = []
    for i, target in enumerate(targets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", "Some regimes for parameter")  # said in the caveat below
            found = optuna.importance.get_param_importances(optuna_study, target=_target(i, multi))
        rows += [{"objective": target, "parameter": p, "importance": v} for p, v in found.items()]
        doc.figure(
            f"importances_{i}",
            _figure(
                optuna.visualization.matplotlib.plot_param_importances,
                optuna_study,
                target=_target(i, multi),
                target_name=target,
            ),
            f"parameter importances for {target}",
        )
    data = pd.DataFrame(rows)
    conditional = sorted(p for p in params if any(p not in t.params for t in complete))
    caveat = (
        f" Not every trial has {', '.join(code(p) for p in conditional)} (a conditional parameter, as β is "
        "when AE trials are among them), and Optuna's evaluators do not weigh such a parameter reliably: "
        "read its effect off the best trials above instead."
        if conditional
        else ""
    )
    doc.text(
        "Optuna's default importance evaluator (PED-ANOVA): the share of each parameter in the "
        "objective's variation over the complete trials." + caveat
    )
    doc.table("importances", data.assign(importance=[f"{v:.3f}" for v in data["importance"]]), data)


def unfinished(doc: Document, optuna_study: optuna.Study):
    others = [t for t in optuna_study.trials if t.state != TrialState.COMPLETE]
    if not others:
        return
    doc.heading("Trials that did not complete")
    frame = pd.DataFrame(
        {
            "trial": [t.number for t in others],
            "state": [t.state.name for t in others],
            "reason": [_why(t) for t in others],
            "params": [", ".join(f"{k}={v}" for k, v in sorted(t.params.items())) for t in others],
        }
    )
    doc.table("unfinished_trials", frame)


def _why(trial) -> str:
    attrs = trial.user_attrs
    if trial.state == TrialState.PRUNED:
        return f"pruned after step {trial.last_step}"
    if names.ERROR in attrs:
        return attrs[names.ERROR]
    if attrs.get("surplus"):
        return "surplus: the search's budget was filled by other workers"
    if "duplicate_of" in attrs:
        return f"duplicate of trial {attrs['duplicate_of']}"
    if trial.state == TrialState.FAIL:
        return "its worker died or was interrupted; the configuration was queued again"
    return trial.state.name.lower()


def _target(i: int, multi: bool):
    return (lambda t: t.values[i]) if multi else None


def _figure(plot, optuna_study, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot(optuna_study, **kwargs)
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(7, 4.2)
    fig.tight_layout()
    return fig
