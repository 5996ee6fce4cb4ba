"""Pure functions from arrays or models to matplotlib Figures; saving and logging live elsewhere."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_curves(history: list[dict[str, float]]):
    """Train and validation curves per epoch: total loss, reconstruction and (for a VAE) KL."""
    epochs = range(1, len(history) + 1)
    panels = [name for name in ("loss", "recon", "kl") if f"val/{name}" in history[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, name in zip(axes[0], panels):
        for split in ("train", "val"):
            ax.plot(epochs, [h[f"{split}/{name}"] for h in history], marker=".", label=split)
        ax.set(title=name, xlabel="epoch", ylabel="nats per example")
        ax.legend()
    fig.tight_layout()
    return fig
