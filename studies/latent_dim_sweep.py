"""Latent size: VAE and AE with 2, 5, 10, 20 and 50 latent dimensions (the reference notebooks used
2, 10, 20, 50).

The same architecture otherwise and the same three seeds (42, 43, 44) at every point. What to
look at: reconstruction, FID and active units against the latent size; the 2-D runs also log
the manifold grid. Run: python studies/latent_dim_sweep.py
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import Study

SIZES = (2, 5, 10, 20, 50)
GRID = {f"{model}-z{size}": {"model": model, "latent_dim": size} for model in ("vae", "ae") for size in SIZES}

if __name__ == "__main__":
    study_main(Study("latent-dim-sweep", RunConfig(epochs=10), grid=GRID, pruner="none", report="latent-dim"))
