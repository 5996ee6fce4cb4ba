"""A free search (TPE) over the VAE's latent size, β, KL warm-up and free bits.

Single objective by default: the validation negative ELBO, with hopeless trials pruned.
`--multi-objective` minimises (validation reconstruction, FID of samples) instead; the report
then shows the Pareto front. Set SEARCH_ARCHITECTURE to also search the hidden size and learning rate.
Run: python studies/search.py --trials 30
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import Study

SEARCH_ARCHITECTURE = False


def space(trial):
    overrides = {
        "latent_dim": trial.suggest_int("latent_dim", 2, 64, log=True),
        "beta": trial.suggest_float("beta", 0.1, 8, log=True),
        "warmup_epochs": trial.suggest_int("warmup_epochs", 0, 10),
        "free_bits": trial.suggest_float("free_bits", 0.0, 0.5),
    }
    if SEARCH_ARCHITECTURE:
        overrides["hidden"] = (trial.suggest_categorical("hidden", [128, 256, 400, 512]),)
        overrides["lr"] = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    return overrides


if __name__ == "__main__":
    study_main(Study("search", RunConfig(epochs=20), space=space, trials=20))
