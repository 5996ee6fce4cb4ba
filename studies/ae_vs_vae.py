"""AE against VAE, the seeds' comparison: the same architecture (784-400-20), three seeds each.

What to look at: reconstruction, FID of samples (each model's own sampler, and a 10-component
GMM fitted to the codes of either) and of reconstructions, and their spread over seeds.
Run: python studies/ae_vs_vae.py
"""
from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import Study

GRID = {f"{model}-seed{seed}": {"model": model, "seed": seed} for model in ("vae", "ae") for seed in (1, 2, 3)}

if __name__ == "__main__":
    study_main(Study("ae-vs-vae", RunConfig(epochs=30, sampler="gmm"), grid=GRID, pruner="none", report="ae-vs-vae"))
