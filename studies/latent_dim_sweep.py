"""Latent size: VAE and AE with 2, 5, 10, 20 and 50 latent dimensions (the reference notebooks used
2, 10, 20, 50).

The same architecture otherwise and the same five seeds (42 to 46) at every point, each run
trained until its validation loss stops improving (`toolkit.studies.SHOWCASE`). What to look at:
reconstruction, FID and active units against the latent size; the 2-D runs also log the
manifold grid. Run: python studies/latent_dim_sweep.py
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import SHOWCASE, SHOWCASE_SEEDS, Study

SIZES = (2, 5, 10, 20, 50)
GRID = {f"{model}-z{size}": {"model": model, "latent_dim": size} for model in ("vae", "ae") for size in SIZES}

if __name__ == "__main__":
    study_main(
        Study(
            "latent-dim-sweep",
            RunConfig(**SHOWCASE),
            grid=GRID,
            seeds=SHOWCASE_SEEDS,
            pruner="none",
            report="latent-dim",
        )
    )
