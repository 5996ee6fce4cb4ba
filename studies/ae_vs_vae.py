"""AE against VAE, the reference comparison: the same architecture (784-400-20), five seeds each,
each run trained until its validation loss stops improving (`toolkit.studies.SHOWCASE`).

What to look at: reconstruction, FID of samples drawn the same way for both (a Gaussian and a
10-component GMM fitted to the codes of either; the VAE's prior samples apart) and of
reconstructions, and their spread over seeds. Run: python studies/ae_vs_vae.py
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import SHOWCASE, SHOWCASE_SEEDS, Study

GRID = {model: {"model": model} for model in ("vae", "ae")}

if __name__ == "__main__":  # seeds 1 to 5: the reference notebook's 1, 2, 3 and two more
    study_main(
        Study(
            "ae-vs-vae",
            RunConfig(**SHOWCASE, seed=1),
            grid=GRID,
            seeds=SHOWCASE_SEEDS,
            pruner="none",
            report="ae-vs-vae",
        )
    )
