"""The autoencoders. One `VAE` and one `AE` receive an encoder and a decoder built for
`config.architecture` (MLP, conv or linear) and share one interface, so that losses, metrics and
samplers work on all of them: `encode(x) -> (mu, logvar or None)`, `decode(z) -> logits`,
`forward(x) -> Output`, `mean(logits) -> the decoder's mean image`. Images are flat (N, 784)
tensors in and logits of the same shape out, whatever the architecture; a linear decoder's
"logits" under a Gaussian likelihood are its mean itself."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from toolkit.config import CONV_CHANNELS, CONV_FEATURES, IMAGE_SIDE, INPUT_DIM, RunConfig


class Output(NamedTuple):
    logits: torch.Tensor  # decoder output before the sigmoid, (N, 784), of the code drawn (the AE's: mu)
    mu: torch.Tensor
    logvar: torch.Tensor | None  # None for the deterministic AE

    def in_fp32(self) -> Output:
        """The same outputs as float32 (from a forward pass under bf16 autocast)."""
        return Output(*(None if t is None else t.float() for t in self))


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp_encoder(config: RunConfig) -> tuple[nn.Module, int]:
    """The MLP encoder 784 -> hidden (ReLU after each layer) and the width of its features."""
    return nn.Sequential(mlp([INPUT_DIM, *config.hidden]), nn.ReLU()), config.hidden[-1]


def mlp_decoder(config: RunConfig) -> nn.Module:
    """latent -> reversed hidden -> 784 logits."""
    return mlp([config.latent_dim, *reversed(config.hidden), INPUT_DIM])


def conv_encoder(config: RunConfig) -> tuple[nn.Module, int]:
    """Two 4x4 stride-2 convolutions (28 -> 14 -> 7 pixels, CONV_CHANNELS channels), batch norm
    and ReLU after each, flattened to CONV_FEATURES features."""
    a, b = CONV_CHANNELS
    return nn.Sequential(
        nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
        nn.Conv2d(1, a, 4, 2, 1),
        nn.BatchNorm2d(a),
        nn.ReLU(),
        nn.Conv2d(a, b, 4, 2, 1),
        nn.BatchNorm2d(b),
        nn.ReLU(),
        nn.Flatten(),
    ), CONV_FEATURES


def conv_decoder(config: RunConfig) -> nn.Module:
    """The encoder mirrored: a linear layer to the 7 x 7 feature map, then two 4x4 stride-2
    transposed convolutions (7 -> 14 -> 28 pixels) to one channel of logits, flattened to 784."""
    a, b = CONV_CHANNELS
    side = IMAGE_SIDE // 4
    return nn.Sequential(
        nn.Linear(config.latent_dim, CONV_FEATURES),
        nn.ReLU(),
        nn.Unflatten(1, (b, side, side)),
        nn.ConvTranspose2d(b, a, 4, 2, 1),
        nn.BatchNorm2d(a),
        nn.ReLU(),
        nn.ConvTranspose2d(a, 1, 4, 2, 1),
        nn.Flatten(),
    )


def linear_encoder(config: RunConfig) -> tuple[nn.Module, int]:
    """No layer: the head reads the pixels themselves."""
    return nn.Identity(), INPUT_DIM


def linear_decoder(config: RunConfig) -> nn.Module:
    """One affine map latent -> 784: a Gaussian likelihood's mean itself (no sigmoid), a Bernoulli one's logits."""
    return nn.Linear(config.latent_dim, INPUT_DIM)


class SharedVarianceHead(nn.Module):
    """The linear VAE's head: the code's mean affine in the image, its log-variance one learned
    vector for every image (as the exact posterior of probabilistic PCA has one covariance for
    every image), so that for Gaussian data q(z) is Gaussian too (`toolkit.ppca`)."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(features, latent_dim)
        self.logvar = nn.Parameter(torch.zeros(latent_dim))
        self.out_features = 2 * latent_dim

    def forward(self, h):
        mu = self.mean(h)
        return torch.cat([mu, self.logvar.expand_as(mu)], -1)


# architecture -> its parts
BUILDERS = {
    "mlp": (mlp_encoder, mlp_decoder),
    "conv": (conv_encoder, conv_decoder),
    "linear": (linear_encoder, linear_decoder),
}


class AE(nn.Module):
    """Deterministic autoencoder: the code is the encoder's output. `encoder` maps images to
    features, the linear `head` maps those to the code, `decoder` maps codes to logits.
    `log_sigma`, for a Gaussian likelihood, is ln σ of the decoder's p(x|z): a parameter when σ
    is learned, a buffer when it is fixed; None for the Bernoulli likelihood. `identity_mean`: the
    decoder's output is its mean image itself, not logits (the linear architecture's Gaussian decoder)."""

    variational = False
    codes_per_dim = 1  # the head's outputs per latent dimension

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        decoder: nn.Module,
        log_sigma: torch.Tensor | None = None,
        identity_mean: bool = False,
    ):
        super().__init__()
        self.latent_dim = head.out_features // self.codes_per_dim
        self.encoder = encoder
        self.head = head
        self.decoder = decoder
        self.identity_mean = identity_mean
        if isinstance(log_sigma, nn.Parameter):
            self.log_sigma = log_sigma
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def learns_sigma(self) -> bool:
        return isinstance(self.log_sigma, nn.Parameter)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image from its output: sigmoid(logits), or the output itself (`identity_mean`)."""
        return logits if self.identity_mean else torch.sigmoid(logits)

    def encode(self, x):
        return self.head(self.encoder(x)), None

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, generator: torch.Generator | None = None) -> Output:
        mu, logvar = self.encode(x)
        z = mu if logvar is None else reparameterize(mu, logvar, generator)
        return Output(self.decode(z), mu, logvar)


class VAE(AE):
    """Gaussian encoder q(z|x) = N(mu, diag(exp(logvar))), prior N(0, I)."""

    variational = True
    codes_per_dim = 2  # mean and log-variance

    def encode(self, x):
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar


def reparameterize(mu, logvar, generator: torch.Generator | None = None):
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build(config: RunConfig, device: torch.device | None = None) -> AE:
    """The model a config describes, initialised from `config.seed`, on `device`."""
    torch.manual_seed(config.seed)
    cls = VAE if config.model == "vae" else AE
    parts, decoder = BUILDERS[config.architecture]
    encoder, features = parts(config)  # created encoder, head, decoder: the order the reference notebooks' weights need
    linear = config.architecture == "linear"
    if linear and cls is VAE:
        head = SharedVarianceHead(features, config.latent_dim)
    else:
        head = nn.Linear(features, cls.codes_per_dim * config.latent_dim)
    identity_mean = linear and config.likelihood == "gaussian"
    model = cls(encoder, head, decoder(config), decoder_log_sigma(config), identity_mean)
    return model.to(device or default_device())


def decoder_log_sigma(config: RunConfig) -> torch.Tensor | None:
    """ln σ of a Gaussian decoder (a parameter when learned), None for the Bernoulli likelihood."""
    if config.likelihood != "gaussian":
        return None
    value = torch.tensor(math.log(config.sigma))
    return nn.Parameter(value) if config.decoder_scale == "learned" else value
