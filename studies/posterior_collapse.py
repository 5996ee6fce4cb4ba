"""Posterior collapse: a Gaussian-likelihood VAE (20-d latent, β = 1) under KL warm-up, free bits
and the decoder's scale σ, which sets how much a nat of reconstruction weighs against a nat of KL
(Lucas et al. 2019): the reference notebooks' fixed σ² = ½, or σ learned with the model (Rybkin et al. 2021).

Grid: warm-up {0, 10} epochs × free bits {0, 0.05, 0.25} nats per dimension × σ {fixed √½,
learned}, and σ fixed at 0.1 (about where learned σ ends) without warm-up or free bits: whether
σ's value or its learning keeps the units. Five seeds each, each run trained until its
validation loss stops improving (`toolkit.studies.SHOWCASE`). What to look at: active and
informative units, the KL each unit carries, and what the change costs in −ELBO, IW bound and
FID; fixed-σ runs are also scored at their best σ. Run: python studies/posterior_collapse.py
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import SHOWCASE, SHOWCASE_SEEDS, Study

GRID = {
    f"warmup{warmup}-fb{free_bits:g}-sigma-{scale}": {
        "warmup_epochs": warmup,
        "free_bits": free_bits,
        "decoder_scale": scale,
    }
    for scale in ("fixed", "learned")
    for warmup in (0, 10)
    for free_bits in (0, 0.05, 0.25)
} | {"warmup0-fb0-sigma-0.1": {"warmup_epochs": 0, "free_bits": 0, "decoder_scale": "fixed", "sigma": 0.1}}

if __name__ == "__main__":
    study_main(
        Study(
            "posterior-collapse",
            RunConfig(likelihood="gaussian", **SHOWCASE),
            grid=GRID,
            seeds=SHOWCASE_SEEDS,
            pruner="none",
            report="posterior-collapse",
        )
    )
