"""MLP autoencoders. `VAE` and `AE` share one interface so that losses, metrics and samplers
work on both: `encode(x) -> (mu, logvar or None)`, `decode(z) -> logits`, `forward(x) -> Output`."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from toolkit.config import INPUT_DIM, RunConfig


class Output(NamedTuple):
    logits: torch.Tensor  # decoder output before the sigmoid, (N, 784)
    z: torch.Tensor  # the latent code fed to the decoder
    mu: torch.Tensor
    logvar: torch.Tensor | None  # None for the deterministic AE


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AE(nn.Module):
    """Deterministic autoencoder: the code is the encoder's output."""

    variational = False

    def __init__(self, latent_dim: int = 20, hidden: tuple[int, ...] = (400,)):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(mlp([INPUT_DIM, *hidden]), nn.ReLU())
        self.head = nn.Linear(hidden[-1], self._head_width())
        self.decoder = mlp([latent_dim, *reversed(hidden), INPUT_DIM])

    def _head_width(self) -> int:
        return self.latent_dim

    def encode(self, x):
        return self.head(self.encoder(x)), None

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, generator: torch.Generator | None = None) -> Output:
        mu, logvar = self.encode(x)
        z = mu if logvar is None else reparameterize(mu, logvar, generator)
        return Output(self.decode(z), z, mu, logvar)


class VAE(AE):
    """Gaussian encoder q(z|x) = N(mu, diag(exp(logvar))), prior N(0, I)."""

    variational = True

    def _head_width(self) -> int:
        return 2 * self.latent_dim

    def encode(self, x):
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (probabilities) decoded from the prior N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return torch.sigmoid(self.decode(z))


def reparameterize(mu, logvar, generator: torch.Generator | None = None):
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build(config: RunConfig, device: torch.device | None = None) -> AE:
    """The model a config describes, initialised from `config.seed`, on `device`."""
    torch.manual_seed(config.seed)
    cls = VAE if config.model == "vae" else AE
    return cls(config.latent_dim, config.hidden).to(device or default_device())
