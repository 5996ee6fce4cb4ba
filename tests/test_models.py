import pytest
import torch

from toolkit.config import RunConfig
from toolkit.models import AE, VAE, build


@pytest.mark.parametrize("hidden", [(400,), (256, 128)])
@pytest.mark.parametrize("model", ["vae", "ae"])
def test_models_share_one_interface(model, hidden):
    net = build(RunConfig(model=model, hidden=hidden, latent_dim=7), torch.device("cpu"))
    x = torch.rand(5, 784)
    mu, logvar = net.encode(x)
    assert mu.shape == (5, 7)
    assert (logvar is None) == (model == "ae")
    out = net(x)
    assert out.logits.shape == (5, 784) and out.z.shape == (5, 7)
    assert net.decode(out.z).shape == (5, 784)


def test_hidden_sizes_shape_the_layers():
    net = VAE(latent_dim=3, hidden=(256, 128))
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 128, 6, 128, 256, 784]


def test_ae_code_is_deterministic_and_vae_code_is_sampled():
    torch.manual_seed(0)
    x = torch.rand(4, 784)
    ae, vae = AE(5), VAE(5)
    assert torch.equal(ae(x).z, ae(x).z)
    assert not torch.equal(vae(x).z, vae(x).z)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(vae(x, g1).z, vae(x, g2).z)


def test_vae_samples_are_images_from_the_prior():
    images = VAE(4).sample(6, torch.Generator().manual_seed(0))
    assert images.shape == (6, 784) and images.min() >= 0 and images.max() <= 1
