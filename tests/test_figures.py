"""Each figure function returns a figure with the expected panels for small inputs."""

import matplotlib.pyplot as plt
import pytest
import torch

from toolkit import drawing, figures
from toolkit.config import RunConfig
from toolkit.models import build


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def model(kind="vae", latent_dim=3):
    torch.manual_seed(0)
    return build(RunConfig(model=kind, latent_dim=latent_dim, hidden=(16,)), "cpu")


def tiles(ax, scale: int = drawing.SCALE, side: int = 28, gap: int = drawing.GAP) -> tuple[int, int]:
    """(rows, columns) of the images tiled into the axis's one picture."""
    height, width = ax.images[0].get_array().shape
    return (height // scale + gap) // (side + gap), (width // scale + gap) // (side + gap)


def test_reconstructions_put_originals_above_reconstructions():
    originals, recon = torch.rand(7, 784), torch.rand(7, 784)
    fig = figures.reconstructions(originals, recon)
    rows = [ax for ax in fig.axes if ax.images]
    assert [ax.get_ylabel() for ax in rows] == ["original", "reconstruction"]
    assert [tiles(ax) for ax in rows] == [(1, 7), (1, 7)]
    side = 28 * drawing.SCALE
    first = rows[1].images[0].get_array()[: side : drawing.SCALE, : side : drawing.SCALE]  # the first reconstruction
    assert torch.allclose(torch.from_numpy(first.copy()).flatten(), recon[0], atol=1e-6)


def test_samples_fill_a_square_grid():
    fig = figures.samples(torch.rand(16, 784), "samples: N(0, I) prior")
    assert tiles(fig.axes[0]) == (4, 4) and fig.axes[0].get_title() == "samples: N(0, I) prior"


def test_interpolation_shows_every_step():
    assert tiles(figures.interpolation(torch.rand(8, 784)).axes[0]) == (1, 8)


def points_shown(fig) -> int:
    return sum(len(collection.get_offsets()) for collection in fig.axes[0].collections)


def test_latent_pca_plots_one_point_per_image_and_names_the_classes():
    names = tuple(f"class {c}" for c in range(10))
    fig = figures.latent_pca(model(latent_dim=5), torch.rand(40, 784), torch.arange(40) % 4, names)
    assert points_shown(fig) == 40
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == list(names[:4])


def test_latent_tsne_uses_the_fixed_subset(monkeypatch):
    monkeypatch.setattr(figures, "TSNE_IMAGES", 35)
    fig = figures.latent_tsne(model(), torch.rand(50, 784), torch.arange(50) % 10)
    assert points_shown(fig) == 35


def test_manifold_is_a_side_by_side_grid():
    assert tiles(figures.manifold(torch.rand(25, 784)).axes[0]) == (5, 5)


def test_kl_bars_have_one_bar_per_dimension():
    assert len(figures.kl_bars([0.0, 1.5, 2.0, 0.01]).axes[0].patches) == 4


def test_kl_heatmap_has_dimensions_as_rows_and_epochs_as_columns():
    fig = figures.kl_heatmap([[1.0, 0.0, 2.0], [1.5, 0.0, 2.5]])  # 2 epochs x 3 dimensions
    assert fig.axes[0].images[0].get_array().shape == (3, 2)


@pytest.mark.parametrize("panels", [["loss", "recon", "kl"], ["loss", "recon"]])  # VAE, AE
def test_loss_curves_show_train_and_validation(panels):
    history = [{f"{split}/{name}": float(epoch) for split in ("train", "val") for name in panels} for epoch in range(3)]
    fig = figures.loss_curves(history)
    assert [ax.get_title() for ax in fig.axes] == panels
    assert all(len(ax.lines) == 2 and len(ax.lines[0].get_xdata()) == 3 for ax in fig.axes)


def texts(fig):
    """Every piece of text a figure draws: titles, labels, ticks, legends, annotations."""
    return [t for t in fig.findobj(plt.Text) if t.get_text().strip() and t.get_visible()]


def every_run_figure():
    vae, history = model(latent_dim=4), [{f"{s}/{n}": 1.0 for s in ("train", "val") for n in ("loss", "recon", "kl")}]
    images, labels = torch.rand(30, 784), torch.arange(30) % 10
    return [
        figures.reconstructions(images[:10], images[:10]),
        figures.samples(images[:16], "samples: N(0, I) prior"),
        figures.interpolation(images[:10]),
        figures.latent_pca(vae, images, labels),
        figures.kl_bars([0.0005, 0.05, 2.0, 0.2], [0.0, 0.0, 1.9, 0.15], 0.05, 3),
        figures.kl_heatmap([[1.0, 0.001, 2.0]] * 3),
        figures.traversals(images[:18], [3, 1], [2.0, 0.5]),
        figures.nearest_training(images[:5], images[5:10], images[10:15], "fmnist-cnn"),
        figures.loss_curves(history * 3),
    ]


def test_every_run_figure_draws_its_text_at_8_points_or_more_at_150_dpi():
    for fig in every_run_figure():
        assert fig.dpi >= 150
        small = [(t.get_text(), t.get_fontsize()) for t in texts(fig) if t.get_fontsize() < 8]
        assert not small, small


def test_kl_bars_are_on_a_log_scale_and_count_as_informative_the_dimensions_whose_information_clears_the_threshold():
    fig = figures.kl_bars([0.0005, 0.05, 2.0, 0.2], [0.0, 0.0, 1.9, 0.02], free_bits=0.05, active=3)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and min(p.get_height() for p in ax.patches) > 0
    assert [line.get_ydata()[0] for line in ax.lines] == [pytest.approx(0.1), pytest.approx(0.05)]
    assert "1 informative, 3 active" in ax.get_title()  # the fourth's KL clears 0.1 nats, its information does not
    informative, other = ax.patches[2].get_facecolor(), ax.patches[3].get_facecolor()
    assert informative != other and ax.patches[0].get_facecolor() == other


def test_kl_heatmap_colours_on_a_log_scale_so_a_thousandth_of_a_nat_differs_from_a_twentieth():
    fig = figures.kl_heatmap([[0.001, 0.05, 2.0]] * 2)
    image = fig.axes[0].images[0]
    low, mid = image.norm(0.001), image.norm(0.05)
    assert mid - low > 0.4  # on a linear 0-2 scale they would be 0.025 apart


def test_pca_names_the_model_and_the_variance_each_axis_explains():
    fig = figures.latent_pca(model(latent_dim=5), torch.rand(40, 784), torch.arange(40) % 4)
    ax = fig.axes[0]
    assert ax.get_title().startswith("VAE latent means: PCA")
    assert ax.get_xlabel().startswith("PC1 (") and "% of variance" in ax.get_ylabel()
