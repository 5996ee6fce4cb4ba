"""Figures the report kinds share, beyond the common look (`toolkit.drawing`): error bars and bands
of means over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
