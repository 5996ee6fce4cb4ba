"""AE against VAE, the reference comparison: the same architecture (784-400-20), three seeds each.

What to look at: reconstruction, FID of samples (each model's own sampler, and a 10-component
GMM fitted to the codes of either) and of reconstructions, and their spread over seeds.
Run: python studies/ae_vs_vae.py
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import Study

GRID = {model: {"model": model} for model in ("vae", "ae")}

if __name__ == "__main__":  # seeds 1, 2, 3: the reference notebook's
    study_main(
        Study("ae-vs-vae", RunConfig(epochs=30, sampler="gmm", seed=1), grid=GRID, pruner="none", report="ae-vs-vae")
    )
