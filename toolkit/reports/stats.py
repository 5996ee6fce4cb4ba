"""The statistics behind every number a report compares: a setting's mean over its seeds with a
95 % interval, two settings compared by the paired difference over the seeds they share, a best
of k settings that must beat each of the other k - 1 after Holm's correction, and a trend read
step by step.

Every interval is Student's t (`scipy.stats.ttest_1samp` and `ttest_rel`): with three seeds a
bootstrap has only ten distinct resamples. Seeds pair naturally: the same seed gives two
settings the same shuffles, noise and (where the shapes agree) initial weights. A difference is
*clear* when its interval excludes zero; nothing else is called a difference.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats

LEVEL = 0.95
Values = dict  # seed -> a run's value of one metric


@dataclass(frozen=True)
class Estimate:
    """A setting's metric over its seeds: mean, sample sd, n and the t interval of the mean."""

    mean: float
    sd: float
    n: int
    low: float
    high: float


def estimate(values) -> Estimate:
    """Mean, sample standard deviation and 95 % t interval of the finite `values` (nan for what
    one value cannot give)."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(values) == 0:
        return Estimate(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(values.mean())
    if len(values) == 1:
        return Estimate(mean, math.nan, 1, math.nan, math.nan)
    sd = float(values.std(ddof=1))
    if sd == 0:
        return Estimate(mean, 0.0, len(values), mean, mean)
    interval = scipy.stats.ttest_1samp(values, 0.0).confidence_interval(LEVEL)
    return Estimate(mean, sd, len(values), float(interval.low), float(interval.high))


@dataclass(frozen=True)
class Difference:
    """a - b over the seeds both settings have: its mean, interval at `level`, n and p-value."""

    mean: float
    low: float
    high: float
    n: int
    p: float
    level: float = LEVEL

    @property
    def clear(self) -> bool:
        """Whether the interval excludes zero (never with fewer than two shared seeds)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def favours(self, lower_is_better: bool) -> str | None:
        """'a' or 'b', the better side when the difference is clear; None when it is not."""
        if not self.clear:
            return None
        return "a" if (self.high < 0) == lower_is_better else "b"


def paired(a: Values, b: Values, level: float = LEVEL) -> Difference:
    """a - b paired by seed over the seeds with a finite value in both, t interval at `level`."""
    seeds = sorted(s for s in a.keys() & b.keys() if _finite(a[s]) and _finite(b[s]))
    x, y = np.array([a[s] for s in seeds], dtype=float), np.array([b[s] for s in seeds], dtype=float)
    d = x - y
    if len(seeds) < 2:
        mean = float(d.mean()) if len(seeds) else math.nan
        return Difference(mean, math.nan, math.nan, len(seeds), math.nan, level)
    if np.all(d == d[0]):  # no spread: the same difference at every seed (t is undefined)
        return Difference(float(d[0]), float(d[0]), float(d[0]), len(seeds), 0.0 if d[0] else 1.0, level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly identical values: scipy says so, the interval holds
        result = scipy.stats.ttest_rel(x, y)
    interval = result.confidence_interval(level)
    return Difference(
        float(d.mean()), float(interval.low), float(interval.high), len(seeds), float(result.pvalue), level
    )


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def holm(p_values: list[float], alpha: float = 1 - LEVEL) -> list[bool]:
    """Holm's step-down test: which of the hypotheses are rejected at family-wise level `alpha`.
    The i-th smallest p (from 0) is compared with alpha / (m - i), until one fails."""
    order = sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    rejected, going = [False] * len(p_values), True
    for rank, i in enumerate(order):
        going = going and not math.isnan(p_values[i]) and p_values[i] <= alpha / (len(p_values) - rank)
        rejected[i] = going
    return rejected


@dataclass(frozen=True)
class Best:
    """The setting with the best mean and its difference from each other setting, each interval at
    the level Holm's step gives it (95 % for the last): `clear` when it beats every one of them."""

    label: object
    others: dict  # label -> Difference (best - other)
    beaten: dict  # label -> whether the best is better than it, after Holm's correction

    @property
    def clear(self) -> bool:
        return all(self.beaten.values())


def best_of(values: dict, lower_is_better: bool = True) -> Best | None:
    """The best of k settings ({label: {seed: value}}), compared with each of the other k - 1 by
    paired difference, Holm-corrected; None when fewer than two settings have values."""
    means = {label: estimate(v.values()).mean for label, v in values.items()}
    means = {label: m for label, m in means.items() if math.isfinite(m)}
    if len(means) < 2:
        return None
    best = (min if lower_is_better else max)(means, key=means.get)
    raw = {other: paired(values[best], values[other]) for other in means if other != best}
    rejected = holm([d.p for d in raw.values()])
    order = sorted(raw, key=lambda o: (math.isnan(raw[o].p), raw[o].p))
    levels = {other: 1 - (1 - LEVEL) / (len(raw) - rank) for rank, other in enumerate(order)}
    others = {other: paired(values[best], values[other], levels[other]) for other in raw}
    beaten = {other: bool(r) and others[other].favours(lower_is_better) == "a" for other, r in zip(raw, rejected)}
    return Best(best, others, beaten)


def steps(values: list[Values]) -> list[Difference]:
    """The paired difference of each setting from the one before it (next - previous)."""
    return [paired(after, before) for before, after in zip(values, values[1:])]
