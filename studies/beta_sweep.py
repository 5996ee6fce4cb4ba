"""β sweep: the VAE at β in {0.1, 0.25, 0.5, 1, 2, 4, 8}, and the AE as the reference.

The same architecture (784-400-20, Bernoulli on grey levels) and the same five seeds (42 to 46)
at every point, each run trained until its validation loss stops improving (patience 10, at most
300 epochs: `toolkit.studies.SHOWCASE`). What to look at: the rate-distortion curve (test KL
against reconstruction) and FID against β, each with its interval over seeds. Every point is a
measurement, so nothing is pruned. Run: python studies/beta_sweep.py (`make demo` passes --seeds 3)
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import SHOWCASE, SHOWCASE_SEEDS, Study

BETAS = (0.1, 0.25, 0.5, 1, 2, 4, 8)
GRID = {f"vae-beta{beta:g}": {"model": "vae", "beta": beta} for beta in BETAS} | {"ae": {"model": "ae"}}

if __name__ == "__main__":
    study_main(
        Study("beta-sweep", RunConfig(**SHOWCASE), grid=GRID, seeds=SHOWCASE_SEEDS, pruner="none", report="beta-sweep")
    )
