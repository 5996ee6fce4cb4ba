import pytest
import torch

from toolkit.config import RunConfig
from toolkit.models import build


def tiny(model="vae", latent_dim=5, **settings):
    return build(RunConfig(model=model, latent_dim=latent_dim, **settings), torch.device("cpu"))


@pytest.mark.parametrize(
    "architecture,hidden", [("mlp", (400,)), ("mlp", (256, 128)), ("conv", (400,)), ("linear", (400,))]
)
@pytest.mark.parametrize("model", ["vae", "ae"])
def test_models_share_one_interface(model, architecture, hidden):
    net = tiny(model, 7, architecture=architecture, hidden=hidden)
    x = torch.rand(5, 784)
    mu, logvar = net.encode(x)
    assert mu.shape == (5, 7)
    assert (logvar is None) == (model == "ae")
    out = net(x)
    assert out.logits.shape == (5, 784) and out.mu.shape == (5, 7)
    assert net.decode(out.mu).shape == (5, 784)


def test_hidden_sizes_shape_the_layers():
    net = tiny(latent_dim=3, hidden=(256, 128))
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 128, 6, 128, 256, 784]


def test_ae_code_is_deterministic_and_vae_code_is_sampled():
    torch.manual_seed(0)
    x = torch.rand(4, 784)
    ae, vae = tiny("ae"), tiny("vae")
    assert torch.equal(ae(x).logits, ae(x).logits) and torch.equal(ae(x).logits, ae.decode(ae(x).mu))
    assert not torch.equal(vae(x).logits, vae(x).logits)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(vae(x, g1).logits, vae(x, g2).logits)


def test_the_conv_model_halves_the_image_twice_and_mirrors_it_back():
    net = tiny(architecture="conv", latent_dim=3)
    convs = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    transposes = [m for m in net.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in convs] == [(1, 32, (2, 2)), (32, 64, (2, 2))]
    assert [(m.in_channels, m.out_channels, m.stride) for m in transposes] == [(64, 32, (2, 2)), (32, 1, (2, 2))]
    assert net.head.in_features == 64 * 7 * 7 and net.head.out_features == 6


@pytest.mark.parametrize("model", ["vae", "ae"])
def test_a_seed_fixes_the_initial_weights_of_either_architecture(model):
    for architecture in ("mlp", "conv"):
        first, second = (tiny(model, architecture=architecture).state_dict() for _ in range(2))
        assert all(torch.equal(first[name], second[name]) for name in first)


def test_the_linear_vae_is_affine_with_one_posterior_variance_and_its_gaussian_mean_is_its_output():
    net = tiny(architecture="linear", likelihood="gaussian", latent_dim=3)
    x = torch.rand(4, 784)
    mu, logvar = net.encode(x)
    assert torch.equal(logvar, logvar[:1].expand(4, 3))  # one variance for every image
    assert torch.allclose(net.encode(2 * x)[0] - mu, net.encode(x)[0] - net.encode(0 * x)[0], atol=1e-5)
    assert torch.equal(net.mean(net.decode(mu)), net.decoder(mu))  # no sigmoid
    bernoulli = tiny(architecture="linear", latent_dim=3)
    assert torch.equal(bernoulli.mean(bernoulli.decode(mu)), torch.sigmoid(bernoulli.decoder(mu)))  # logits
