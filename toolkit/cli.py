"""`toolkit train | ui`: argument parsing only; the work happens in the modules."""
from __future__ import annotations

import argparse
import os
import sys

from toolkit import command
from toolkit.config import DATASETS, FID_MODES, LIKELIHOODS, MODELS, SAMPLERS, RunConfig, parse_hidden


def add_run_arguments(parser: argparse.ArgumentParser):
    d = RunConfig()
    parser.add_argument("--model", default=d.model, help=f"one of {', '.join(MODELS)} (default {d.model})")
    parser.add_argument("--dataset", default=d.dataset, help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--latent-dim", type=int, default=d.latent_dim)
    parser.add_argument("--hidden", default="400", help="hidden layer sizes, e.g. 400 or 256,128")
    parser.add_argument("--likelihood", default=d.likelihood, help=f"one of {', '.join(LIKELIHOODS)}")
    parser.add_argument("--beta", type=float, default=d.beta, help="weight of the KL term")
    parser.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="linear KL warm-up length")
    parser.add_argument("--free-bits", type=float, default=d.free_bits, help="nats per latent dimension")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--patience", type=int, default=d.patience, help="early stopping; 0 turns it off")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    parser.add_argument("--fid", default=d.fid, help=f"one of {', '.join(FID_MODES)}: auto scores with the "
                        "domain CNN always and Inception too when its weights and a GPU are here")
    parser.add_argument("--fid-samples", type=int, default=d.fid_samples, help="generated images per FID")
    parser.add_argument("--sampler", default=d.sampler, help=f"one of {', '.join(SAMPLERS)}: gmm adds FID of "
                        "samples from a 10-component Gaussian mixture fitted to the training codes")
    parser.add_argument("--iw-samples", type=int, default=d.iw_samples,
                        help="K of the importance-weighted NLL bound (VAE); 0 skips it")
    parser.add_argument("--fid-weights", default=None,
                        help="pytorch-fid Inception weights file (or set TOOLKIT_FID_WEIGHTS)")


def config_from_args(args) -> RunConfig:
    return RunConfig(model=args.model, dataset=args.dataset, latent_dim=args.latent_dim,
                     hidden=parse_hidden(args.hidden), likelihood=args.likelihood, beta=args.beta,
                     warmup_epochs=args.warmup_epochs, free_bits=args.free_bits, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
                     limit=args.limit, fid=args.fid, fid_samples=args.fid_samples, sampler=args.sampler,
                     iw_samples=args.iw_samples)


def cmd_train(args):
    from toolkit.pipeline import train_run
    from toolkit.tracking import tracking_uri

    config = config_from_args(args)  # refuses bad values before any data is read
    result = train_run(config, args.experiment, args.data_dir, args.quiet, fid_weights=args.fid_weights)
    print(f"run {result.run_id} finished; store {tracking_uri()}; browse with `toolkit ui`")


def cmd_ui(args):
    from toolkit.tracking import artifact_root, tracking_uri

    uri = tracking_uri()
    ui_argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]
    if artifact_root(uri):
        ui_argv += ["--default-artifact-root", artifact_root(uri).as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} (store {uri}); Ctrl-C stops it", flush=True)
    os.execv(sys.executable, ui_argv)  # the UI takes over this process, so signals reach it directly


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="toolkit", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one AE or VAE and log it to MLflow")
    add_run_arguments(train)
    train.add_argument("--experiment", default=None, help="MLflow experiment (default: the dataset name)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)
    ui = sub.add_parser("ui", help="start the MLflow UI on the tracking store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    with command("an open run is marked KILLED"):
        args.func(args)


if __name__ == "__main__":
    main()
