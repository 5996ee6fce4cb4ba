"""One tracked run from start to end: config -> data -> model -> fit -> evaluate -> MLflow."""
from __future__ import annotations

from toolkit import figures
from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.evaluate import elbo_metrics, kl_dim_key
from toolkit.models import build, default_device
from toolkit.tracking import start_run
from toolkit.train import fit


def run_name(config: RunConfig) -> str:
    name = f"{config.model}-z{config.latent_dim}"
    return name + f"-beta{config.beta:g}" if config.model == "vae" else name


def train_run(config: RunConfig, experiment: str | None = None, data_dir=None, quiet: bool = False,
              tags: dict[str, str] | None = None, callbacks=()) -> str:
    """Train, evaluate and log one run; returns its MLflow run id.

    Data are loaded before the run is created, so a missing dataset leaves no empty run behind.
    """
    device = default_device()
    splits = load_splits(config.dataset, data_dir, config.limit, device)
    model = build(config, device)
    run_tags = {"model": config.model, "dataset": config.dataset, "data_dir": str(splits.source.resolve()),
                **(tags or {})}
    with start_run(experiment or config.dataset, run_name(config), run_tags) as run:
        run.log_params(config.to_params())
        result = fit(model, splits, config, [run.log_epoch, *callbacks], quiet)
        test = elbo_metrics(model, splits.test, config.likelihood, config.beta)
        run.log_metrics({f"test/{k}": v for k, v in test.items()} | {"best_epoch": result.best_epoch})
        run.log_model(model, config)
        if model.variational:
            per_dim = [test[kl_dim_key(d)] for d in range(config.latent_dim)]
            run.log_json({"test": per_dim, "val_by_epoch": [[h[f"val/{kl_dim_key(d)}"] for d in range(config.latent_dim)]
                                                          for h in result.history]}, "kl_per_dim.json")
        run.log_figure(figures.loss_curves(result.history), "loss_curves")
        return run.run_id
