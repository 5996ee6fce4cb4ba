"""Posterior collapse: a Gaussian-likelihood VAE (20-d latent, β = 1) under KL warm-up and free bits.

Grid: warm-up {0, 10} epochs × free bits {0, 0.05, 0.25} nats per dimension. What to look at:
active units and the KL of each latent dimension (the runs' kl_per_dim and kl_heatmap figures).
Run: python studies/posterior_collapse.py
"""
from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import Study

GRID = {f"warmup{warmup}-fb{free_bits:g}": {"warmup_epochs": warmup, "free_bits": free_bits}
        for warmup in (0, 10) for free_bits in (0, 0.05, 0.25)}

if __name__ == "__main__":
    study_main(Study("posterior-collapse", RunConfig(likelihood="gaussian", epochs=20), grid=GRID, pruner="none", report="posterior-collapse"))
