"""`toolkit train | evaluate | report | ui | dashboard | data`: argument parsing only; the work happens in the
modules."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from toolkit import ToolkitError, masked
from toolkit.commands import command
from toolkit.config import DATASETS, ConfigError, RunConfig, parse_value
from toolkit.reports import KINDS as REPORT_KINDS
from toolkit.storage_errors import RERUN
from toolkit.ui import DASHBOARD_PORT, UI_HOST, UI_PORT


def add_run_arguments(
    parser: argparse.ArgumentParser, base: RunConfig, required: bool = True, unlisted: frozenset[str] = frozenset()
):
    """One option per `RunConfig` field (`latent_dim` -> `--latent-dim`), typed, explained and
    checked by the field's own declaration. Its default is `base`'s value; with `required=False` an
    option not given is left out of the parsed arguments (a study keeps its own value). Fields in
    `unlisted` are parsed but not shown in --help (a study's per-trial settings, refused later)."""
    group = parser.add_argument_group("run settings" if required else "run settings (default: the study's)")
    for field in dataclasses.fields(base):
        value, choices = getattr(base, field.name), field.metadata.get("choices")
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=_field_type(type(base), field.name),
            default=value if required else argparse.SUPPRESS,
            help=argparse.SUPPRESS
            if field.name in unlisted
            else field.metadata.get("help", field.name.replace("_", " "))
            + (f"; one of {', '.join(choices)}" if choices else "")
            + ("" if value is None else f" (default {shown})"),
        )


def _field_type(cls: type, name: str):
    """A command-line word as the field's value; a word that is not one is a one-line error naming the field."""

    def convert(word: str):
        try:
            return parse_value(name, word, cls)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def config_from_args(args, cls: type = RunConfig) -> RunConfig:
    """The `cls` (a RunConfig) whose fields the parsed arguments hold."""
    return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})


def cmd_train(args):
    config = config_from_args(args)  # refuses bad values before any data is read or a slow module imported
    config.check_memory()  # and a run this machine cannot hold
    from toolkit.store.location import tracking_uri
    from toolkit.store.writing import new_experiment_location, resumable_run

    if args.resume:  # what cannot be resumed is refused before torch is imported
        _check_resume_alone(args.words)
        resuming = resumable_run(args.resume)
    if args.experiment is not None:
        new_experiment_location(args.experiment)  # refuses a name the store cannot hold, before torch is imported
    from toolkit.pipeline import resume_run, train_run

    if args.resume:
        result = resume_run(resuming, args.data_dir, args.quiet, args.fid_weights)
    else:
        result = train_run(
            config,
            args.experiment,
            args.data_dir,
            args.quiet,
            fid_weights=args.fid_weights,
            on_start=lambda run_id: print(
                f"run {run_id} started; if it stops, `toolkit train --resume {run_id}` continues it"
            ),
        )
    print(f"run {result.run_id} finished; store {masked(tracking_uri())}; browse with `toolkit ui`")


TRAIN_AGAIN = (
    "go on with `toolkit train --resume RUN_ID` (the id it printed when it started; the same command "
    "again would start a new run)"
)
RESUME_OPTIONS = ("--resume", "--data-dir", "--fid-weights", "--quiet")  # what goes with --resume


def _check_resume_alone(words: list[str]):
    """--resume takes the run's own settings: any other option typed is refused, not ignored, even
    one whose value is its default."""
    given = [word.split("=", 1)[0] for word in words if word.startswith("--")]
    others = [option for option in dict.fromkeys(given) if option not in RESUME_OPTIONS]
    if others:
        raise ToolkitError(
            f"resume: a resumed run keeps its own settings; drop {', '.join(others)} (only "
            f"{', '.join(RESUME_OPTIONS[1:-1])} and {RESUME_OPTIONS[-1]} go with --resume)"
        )


def cmd_evaluate(args):
    from toolkit.reevaluate import evaluate_runs, experiment_runs

    if bool(args.run_ids) == bool(args.experiment):
        raise ToolkitError("evaluate: give run ids or --experiment NAME, not both and not neither")
    run_ids = args.run_ids or experiment_runs(args.experiment)
    added = evaluate_runs(run_ids, args.data_dir, args.fid_weights)
    print(
        f"{sum(bool(keys) for keys in added.values())} of {len(added)} runs gained metrics; rebuild their reports "
        "with `toolkit report`"
    )


def cmd_report(args):
    from toolkit.reports import REPORTS_DIR, write_report

    if args.kind == "index":
        from toolkit.reports.index import write_index, write_readme_findings

        print(f"index written: {write_index(args.out or REPORTS_DIR)}")
        if args.readme:
            print(f"findings written: {write_readme_findings(args.out or REPORTS_DIR, args.readme)}")
        return
    _, path = write_report(args.kind, args.experiment, args.parent, args.out, args.study, args.storage)
    print(f"report written: {path}")


def cmd_ui(args):
    from toolkit.ui import serve

    serve(args.host, args.port)


def cmd_dashboard(args):
    from toolkit.ui import serve_dashboard

    serve_dashboard(args.storage, args.host, args.port)


def cmd_data(args):
    from toolkit.data import load_splits

    splits = load_splits(args.dataset, args.data_dir, download=not args.no_download)
    print(
        f"{args.dataset}: {splits.source} ({len(splits.train) + len(splits.val):,} training and "
        f"{len(splits.test):,} test images)"
    )


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors (an unknown flag, a value of the wrong type, a bad choice)
    are one line naming the option, like the toolkit's other errors, instead of a usage block."""

    def error(self, message: str):
        print(f"error: {' '.join(message.splitlines())}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, but `--option=--` is refused: argparse drops the `--` and gives the
        option an empty list, which no check downstream expects."""
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            if action.option_strings and action.nargs is None and getattr(parsed, action.dest, None) == []:
                self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return parsed, extras


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="toolkit", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one AE or VAE and log it to MLflow")
    add_run_arguments(train, RunConfig())
    train.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    train.add_argument(
        "--fid-weights", default=None, help="pytorch-fid Inception weights file (or set TOOLKIT_FID_WEIGHTS)"
    )
    train.add_argument("--experiment", default=None, help="MLflow experiment (default: the dataset name)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue this FAILED or KILLED run from its last checkpoint, with its own settings",
    )
    train.set_defaults(func=cmd_train)
    evaluate = sub.add_parser(
        "evaluate",
        help="log into finished runs the metrics and figures they lack, from their logged models (no retraining)",
    )
    evaluate.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="the runs to evaluate")
    evaluate.add_argument("--experiment", default=None, help="every finished training run of this experiment")
    evaluate.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    evaluate.add_argument(
        "--fid-weights", default=None, help="pytorch-fid Inception weights file (or set TOOLKIT_FID_WEIGHTS)"
    )
    evaluate.set_defaults(func=cmd_evaluate)
    report = sub.add_parser(
        "report",
        help="write a markdown report (tables as CSV, figures as PNG) from the store",
        description="Write DIR/README.md, its tables as CSV and its figures as PNG, from the "
        "runs in the tracking store (MLFLOW_TRACKING_URI or mlruns/); nothing is retrained.",
    )
    report.add_argument(
        "kind",
        choices=[*REPORT_KINDS, "index"],
        help="what the report compares; index: one page over the reports in --out (default reports/)",
    )
    report.add_argument("--experiment", default=None, help="MLflow experiment whose runs are reported")
    report.add_argument("--parent", default=None, help="only the child runs of this parent run (a study)")
    report.add_argument("--out", default=None, help="output directory (default: reports/<experiment>)")
    report.add_argument("--study", default=None, help="Optuna study, for the study kind (default: the experiment name)")
    report.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in mlruns/optuna.db)")
    report.add_argument(
        "--readme", default=None, help="index: also write the reports' findings into this README's findings block"
    )
    report.set_defaults(func=cmd_report)
    ui = sub.add_parser("ui", help="start the MLflow UI on the tracking store")
    ui.add_argument("--host", default=UI_HOST)
    ui.add_argument("--port", type=int, default=UI_PORT)
    ui.set_defaults(func=cmd_ui)
    dashboard = sub.add_parser("dashboard", help="start optuna-dashboard on the studies' Optuna storage")
    dashboard.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in mlruns/optuna.db)")
    dashboard.add_argument("--host", default=UI_HOST)
    dashboard.add_argument("--port", type=int, default=DASHBOARD_PORT)
    dashboard.set_defaults(func=cmd_dashboard)
    data = sub.add_parser(
        "data",
        help="find the dataset's IDX files (or download them with torchvision), check them",
        description="Find and check the IDX files: --data-dir, $TOOLKIT_DATA_DIR, ./data, "
        "/usr/share/datasets/<name> (Debian's dataset-fashion-mnist), else torchvision's "
        "download into ./data. `make data` installs the Debian package first when it can.",
    )
    data.add_argument("--dataset", default=RunConfig.dataset, choices=DATASETS)
    data.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    data.add_argument("--no-download", action="store_true", help="only look; do not try torchvision's download")
    data.set_defaults(func=cmd_data)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    args.words = sys.argv[1:] if argv is None else list(argv)  # what was typed, for `_check_resume_alone`
    with command("an open run is marked KILLED", TRAIN_AGAIN if args.command == "train" else RERUN):
        args.func(args)


def study_main(study, argv=None):
    """The command line every study script shares: run (or resume) the declared study, then write
    its report (the kind the declaration names) and print where everything is."""
    from toolkit.studies import GRID_SEEDS, PRUNERS, SEARCH_SEEDS, varied_settings

    study = dataclasses.replace(study, description=study.description or sys.modules["__main__"].__doc__ or "")
    parser = Parser(description=study.description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if not study.grid:
        parser.add_argument(
            "--trials",
            type=int,
            default=None,
            help=f"finished trials to aim for (default {study.trials}, 3 with --quick)",
        )
        parser.add_argument(
            "--multi-objective",
            action="store_true",
            help="minimise (validation reconstruction, FID of samples) and report the Pareto front",
        )
    seeds = study.seeds or (GRID_SEEDS if study.grid else SEARCH_SEEDS)
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=(
            f"seeds per {'grid point' if study.grid else 'trial'}: --seed and the ones after it, the same at every "
            f"{'point' if study.grid else 'trial'} (default {seeds}, 1 with --quick)"
            + ("; a rerun with more runs only the seeds it lacks" if study.grid else "; a trial scores their mean")
        ),
    )
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in mlruns/optuna.db)")
    parser.add_argument("--workers", type=int, default=1, help="processes on this machine, sharing its cores")
    parser.add_argument(
        "--no-group",
        action="store_true",
        help="train every run alone, one model at a time, as `toolkit train` does (default: grid runs "
        "of one MLP shape train together as one stacked model, each still its own run and trial)",
    )
    parser.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    parser.add_argument("--pruner", default=study.pruner, choices=sorted(PRUNERS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 2 epochs on 2,000 images, one seed" + ("" if study.grid else ", 3 trials"),
    )
    parser.add_argument("--name", default=None, help="study name (default: derived from the script and settings)")
    parser.add_argument("--out", default=None, help="report directory (default: reports/<study name>)")
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="end without writing the report (a machine joining a study another one reports; "
        f"`toolkit report {study.report} --experiment NAME` writes it later)",
    )
    add_run_arguments(parser, study.base, required=False, unlisted=frozenset(varied_settings(study)))
    args = parser.parse_args(argv)
    with command("finished trials are kept; rerun the same command to resume"):
        _run_study_command(configure(study, args), args)


def _run_study_command(study, args):
    from toolkit.store import location
    from toolkit.studies import Execution, run_and_report, run_study

    execution = Execution(args.storage, args.workers, args.data_dir, group=not args.no_group)
    where = (
        f"MLflow experiment '{study.name}' (browse with `toolkit ui`); "
        f"Optuna study '{study.name}' in {masked(args.storage or location.optuna_storage())}"
    )
    if args.no_report:
        run_study(study, execution)
        storage = f" --storage {masked(args.storage)}" if args.storage else ""
        later = f"toolkit report {study.report} --experiment {study.name}{storage}"
        print(f"study finished; its report was not written (`{later}` writes it); {where}")
        return
    doc, path, parent = run_and_report(study, execution, args.out)
    print(doc.main_table)
    print(f"\nreport: {path} (also under the artifacts of the parent run {parent}); {where}")


def configure(study, args):
    """The declared study with the command line's settings; its name tells studies with other settings apart.
    Bad settings are refused before any data is read."""
    from toolkit.data import training_size
    from toolkit.studies import QUICK, check_workers, varied_settings

    if args.workers < 1:
        raise ToolkitError(f"workers: must be >= 1, got {args.workers}")
    if getattr(args, "trials", None) is not None and args.trials < 1:
        raise ToolkitError(f"trials: must be >= 1, got {args.trials}")
    if args.seeds is not None and args.seeds < 1:
        raise ToolkitError(f"seeds: must be >= 1, got {args.seeds}")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig) if hasattr(args, f.name)}
    check_workers(args.workers, dataclasses.replace(study.base, **given))  # refuses a bad value first
    varied = sorted(given.keys() & varied_settings(study))
    if varied:
        raise ToolkitError(
            f"{varied[0]}: this study sets it per trial; drop "
            + ", ".join(f"--{name.replace('_', '-')}" for name in varied)
        )
    dataset = given.get("dataset", study.base.dataset)
    quick = {}
    if args.quick:  # at most QUICK's number of images: all of them where the data has fewer
        enough = training_size(dataset, args.data_dir) > QUICK["limit"]
        quick = {**QUICK, "limit": QUICK["limit"] if enough else None}
    overrides = {**quick, **given}
    name = args.name or "-".join(
        [study.name, *([dataset] if dataset != RunConfig.dataset else []), *(["quick"] if args.quick else [])]
    )
    return dataclasses.replace(
        study,
        name=name,
        base=dataclasses.replace(study.base, **overrides),
        pruner=args.pruner,
        trials=(3 if args.quick else study.trials) if getattr(args, "trials", None) is None else args.trials,
        seeds=args.seeds or (1 if args.quick else study.seeds),
        multi_objective=getattr(args, "multi_objective", False),
    )


if __name__ == "__main__":
    main()
