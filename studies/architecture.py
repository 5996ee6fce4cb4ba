"""MLP against conv, for the AE and the VAE: the reference comparison (20-d latent, Bernoulli, β = 1,
trained until validation stops improving: `toolkit.studies.SHOWCASE`) with either encoder and
decoder, five seeds each.

The MLP is 784-400-20 and back; the conv model has two stride-2 4x4 convolutions (32 and 64
channels, batch norm) and their transposes. What to look at: whether the AE-vs-VAE conclusions
hold for both architectures, and how much sharper the conv models' samples are (FID of samples
from a Gaussian and a GMM fitted to the codes, and from the VAE's prior). Run: python studies/architecture.py
"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import SHOWCASE, SHOWCASE_SEEDS, Study

GRID = {
    f"{architecture}-{model}": {"architecture": architecture, "model": model}
    for architecture in ("mlp", "conv")
    for model in ("vae", "ae")
}

if __name__ == "__main__":  # seeds 1 to 5, as in studies/ae_vs_vae.py
    study_main(
        Study(
            "architecture",
            RunConfig(**SHOWCASE, seed=1),
            grid=GRID,
            seeds=SHOWCASE_SEEDS,
            pruner="none",
            report="ae-vs-vae",
        )
    )
