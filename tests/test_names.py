"""One module of shared names: no other module types a metric key, and every metric name the
readers use (the reports, resuming, `toolkit evaluate`) is one that real runs log."""

import re
from pathlib import Path

from conftest import write_idx_set
from mlflow import MlflowClient

from toolkit import fid, names
from toolkit.config import RunConfig
from toolkit.pipeline import train_run

PACKAGE = Path(names.__file__).parent
KEY_LITERAL = re.compile(r"""["'](test|val|train|fid|precision|recall|nearest|prior_hole|time)/""")
FAMILIES = ("test", "val", "train", "time")


def test_no_module_but_names_types_a_metric_key():
    typed = [
        f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "names.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if KEY_LITERAL.search(line)
    ]
    assert typed == []


def declared_metrics(extractor: str, latent_dim: int) -> set[str]:
    """Every metric key names.py declares, its builders filled in for one extractor."""
    constants = {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value.split("/")[0] in FAMILIES and "/" in value
    }
    built = {names.fid(extractor, kind) for kind in names.FID_KIND_HEADERS}
    built |= {
        f(extractor, kind)
        for f in (names.precision, names.recall)
        for kind in names.FID_KIND_HEADERS
        if kind != names.RECONSTRUCTIONS
    }
    built |= {names.prior_hole(extractor), names.nearest(extractor), names.nearest(names.PIXELS)}
    built |= {names.test(k(d)) for k in (names.kl_dim, names.marginal_kl_dim) for d in range(latent_dim)}
    built |= {names.test(names.mutual_info_dim(d, end)) for end in ("low", "high") for d in range(latent_dim)}
    built |= {names.test(names.recon_class(0)), names.BETA_EFF, names.BEST_EPOCH, names.EPOCHS_TRAINED}
    built |= {split(term) for split in (names.train, names.val) for term in (names.LOSS, names.RECON, names.KL)}
    return constants | built


def test_every_declared_metric_is_logged_by_real_runs(tmp_path, store):
    data = write_idx_set(tmp_path / "data", n_train=300, n_test=200)
    latent = 3
    configs = [
        RunConfig(model="vae", latent_dim=latent, epochs=1, iw_samples=2, iw_images=50, fid_samples=200),
        RunConfig(model="ae", latent_dim=latent, epochs=1, fid_samples=200),
        RunConfig(
            model="vae",
            latent_dim=latent,
            epochs=1,
            likelihood="gaussian",
            decoder_scale="learned",
            iw_samples=2,
            fid_samples=200,
        ),
        RunConfig(latent_dim=latent, epochs=1, likelihood="gaussian", fid="off", iw_samples=0, figures="off"),
    ]
    client = MlflowClient(store)
    logged = set()
    for config in configs:
        run_id = train_run(config, experiment="names", data_dir=data, quiet=True).run_id
        logged |= set(client.get_run(run_id).data.metrics)
    missing = declared_metrics(fid.DOMAIN_NAMES["fashion-mnist"], latent) - logged
    assert missing == set(), f"declared in names.py (and read by reports) but logged by no run: {sorted(missing)}"
