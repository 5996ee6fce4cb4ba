"""Figures the report kinds share, beyond the common look (`toolkit.drawing`): error bars and bands
of means over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from toolkit import names
from toolkit.reports.stats import estimate

BARS = "Error bars: 95 % Student-t intervals of the mean over the seeds (none where a setting has one seed)."
BANDS = "Bands: the 95 % Student-t interval of the mean over the seeds at each epoch (none for one seed)."


def half_widths(settings: pd.DataFrame, key: str) -> np.ndarray | None:
    """The half-widths of the 95 % intervals of `key`'s means, for error bars; None when no
    setting has several seeds."""
    low = settings.get(f"{key}_low")
    return None if low is None or low.isna().all() else (settings[key] - low).fillna(0).to_numpy()


def errorbars(ax, x, settings: pd.DataFrame, key: str, label: str | None = None, **style):
    """Means of `key` against x, with their 95 % intervals where there are several seeds."""
    style = {"marker": "o", "capsize": 3, **style}
    ax.errorbar(
        np.asarray(x, dtype=float), settings[key].to_numpy(), yerr=half_widths(settings, key), label=label, **style
    )


def curves(ax, histories: pd.DataFrame, key: str, label: str, **style):
    """The mean over runs of a per-epoch metric, with the 95 % interval of that mean as a band."""
    values = histories[histories["key"] == key].pivot_table(index="step", columns="run_id", values="value")
    if values.empty:
        return
    (line,) = ax.plot(values.index, values.mean(axis=1), label=label, **style)
    if values.shape[1] > 1:
        found = [estimate(row.dropna()) for _, row in values.iterrows()]
        low, high = np.array([e.low for e in found]), np.array([e.high for e in found])
        ax.fill_between(
            values.index,
            np.where(np.isnan(low), values.mean(axis=1), low),
            np.where(np.isnan(high), values.mean(axis=1), high),
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )


def rate_split(settings: pd.DataFrame, labels: list[str], ceilings: dict[str, float]):
    """Each setting's rate and its two parts as brackets (the seeds' means of their ends): I(x; z)
    and KL(q(z) ‖ p(z)) as bars from low to high end, beside the mixture estimates of the lower end
    over the test images alone and pooled with the training images, and their ceilings log N
    (`ceilings`: a line's label, its height)."""
    x = np.arange(len(settings))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(x) + 2) + 2.2, 3.6))
    for offset, (what, low, high, colour) in zip(
        (-0.12, 0.12),
        (
            ("I(x; z)", names.TEST_MUTUAL_INFO_LOW, names.TEST_MUTUAL_INFO_HIGH, "C0"),
            ("KL(q(z) ‖ p(z))", names.TEST_MARGINAL_KL_LOW, names.TEST_MARGINAL_KL_HIGH, "C1"),
        ),
    ):
        bottom, top = settings[low].to_numpy(), settings[high].to_numpy()
        ax.bar(x + offset, top - bottom, bottom=bottom, width=0.2, color=colour, alpha=0.6, label=f"{what}: bracket")
    ax.plot(x, settings[names.TEST_KL], "k_", markersize=18, label="rate (KL)")
    ax.plot(x - 0.12, settings[names.TEST_MUTUAL_INFO_MIXTURE], "v", color="C2", label="mixture estimate, test")
    ax.plot(x - 0.12, settings[names.TEST_MUTUAL_INFO_POOLED], "^", color="C3", label="… test and training")
    for (label, height), style in zip(ceilings.items(), (":", "--")):
        ax.axhline(height, color="0.4", linestyle=style, linewidth=0.8, label=label)
    ax.set(xticks=x, ylabel="nats", ylim=(0, None), title="The rate split: what the estimators can say")
    ax.set_xticklabels(labels, rotation=30 if max(map(len, labels)) > 8 else 0, ha="right")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig
