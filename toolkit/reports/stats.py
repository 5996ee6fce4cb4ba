"""The statistics behind every number a report compares: a setting's mean over its seeds with a
95 % interval, two settings compared by the paired difference over the seeds they share, and
every family of such comparisons a report makes (a table against its reference, the steps of a
trend, a best of k against the other k - 1) corrected by Holm's method within that family.

Every interval is Student's t (`scipy.stats.ttest_1samp` and `ttest_rel`): with three seeds a
bootstrap has only ten distinct resamples. Seeds pair naturally: the same seed gives two
settings the same shuffles, noise and (where the shapes agree) initial weights. A difference
that is the same at every seed has no spread, so no t: it is judged by the exact sign-flip
permutation test, whose p is 2 / 2^n (0.25 with three seeds), and it has no interval. A
difference is *clear* when it survives Holm's correction within its family at the family-wise
level 1 - LEVEL; nothing else is called a difference.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.stats

LEVEL = 0.95
ALPHA = 1 - LEVEL  # the family-wise error rate of every family of comparisons
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


def prediction_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """Where one more run of the setting falls with probability `level`, from its runs' finite
    `values`: mean ± t(n - 1) · sd · √(1 + 1/n), wider than the interval of the mean (± t · sd / √n)
    by the new run's own spread. What a single run, such as a published one, is compared with;
    (nan, nan) from fewer than two values."""
    found = estimate(values)
    if found.n < 2:
        return math.nan, math.nan
    half = scipy.stats.t.ppf((1 + level) / 2, found.n - 1) * found.sd * math.sqrt(1 + 1 / found.n)
    return found.mean - half, found.mean + half


@dataclass(frozen=True)
class Difference:
    """a - b over the seeds both settings have: its mean, its interval at `level` (nan where it has
    none: fewer than two seeds, or the same difference at every seed), n and p-value, and the
    family of comparisons it was judged in: `family` says what they compare, `size` how many there
    are with a p, and `adjusted` is its p after Holm's correction within them (its own p when it
    is alone)."""

    mean: float
    low: float
    high: float
    n: int
    p: float
    level: float = LEVEL
    adjusted: float = math.nan
    family: str = ""
    size: int = 1

    @property
    def clear(self) -> bool:
        """Whether it survives Holm's correction within its family (never with fewer than two seeds)."""
        return self.n >= 2 and self.adjusted <= ALPHA

    @property
    def constant(self) -> bool:
        """Whether it is the same at every one of two or more seeds: judged by the exact test, no interval."""
        return self.n >= 2 and math.isnan(self.low)

    def favours(self, lower_is_better: bool) -> str | None:
        """'a' or 'b', the better side when the difference is clear; None when it is not."""
        if not self.clear:
            return None
        return "a" if (self.mean < 0) == lower_is_better else "b"


def paired(a: Values, b: Values, level: float = LEVEL) -> Difference:
    """a - b paired by seed over the seeds with a finite value in both, alone in its family: its t
    interval at `level`, or with no spread the exact sign-flip p (`exact_p`) and no interval."""
    seeds = sorted(s for s in a.keys() & b.keys() if _finite(a[s]) and _finite(b[s]))
    x, y = np.array([a[s] for s in seeds], dtype=float), np.array([b[s] for s in seeds], dtype=float)
    d = x - y
    if len(seeds) < 2:
        mean = float(d.mean()) if len(seeds) else math.nan
        return Difference(mean, math.nan, math.nan, len(seeds), math.nan, level)
    if np.allclose(d, d[0], rtol=1e-9, atol=0):  # no spread but the rounding of floats: t is undefined
        p = exact_p(float(d.mean()), len(seeds))
        return Difference(float(d.mean()), math.nan, math.nan, len(seeds), p, level, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly identical values: scipy says so, the interval holds
        result = scipy.stats.ttest_rel(x, y)
    interval, p = result.confidence_interval(level), float(result.pvalue)
    return Difference(float(d.mean()), float(interval.low), float(interval.high), len(seeds), p, level, p)


def exact_p(difference: float, n: int) -> float:
    """The exact sign-flip permutation test of n paired differences all equal to `difference`: of
    the 2^n ways to flip their signs only the two with every sign alike reach a sum as far from
    zero, so p = 2 / 2^n (0.25 with three seeds, 0.0625 with five); 1 for no difference."""
    return 2 / 2**n if difference else 1.0


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def holm(p_values: list[float]) -> list[float]:
    """Holm's adjusted p-values: the i-th smallest of the m p-values (from 0) times m - i, never
    below the one before it, at most 1. A hypothesis is rejected at family-wise level α when its
    adjusted p is at most α: Holm's step-down test, which compares the i-th smallest p with
    α / (m - i) until one fails. A nan p (no test) stays nan and is not counted in m."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def family(pairs: dict, name: str) -> dict:
    """The paired differences a - b of `pairs` ({key: (a, b)}) judged as one family of comparisons,
    `name` saying what they compare (e.g. 'comparisons of the table against the baseline'): each
    clear only when it survives Holm's correction within the family, its interval at the level
    Holm's step gives it (1 - α / (m - i) for the i-th smallest p from 0, the last at 1 - α)."""
    raw = {key: paired(a, b) for key, (a, b) in pairs.items()}
    adjusted = dict(zip(raw, holm([d.p for d in raw.values()])))
    tested = sorted((key for key, d in raw.items() if not math.isnan(d.p)), key=lambda key: raw[key].p)
    levels = {key: 1 - ALPHA / (len(tested) - rank) for rank, key in enumerate(tested)}
    return {
        key: replace(paired(a, b, levels.get(key, LEVEL)), adjusted=adjusted[key], family=name, size=len(tested))
        for key, (a, b) in pairs.items()
    }


@dataclass(frozen=True)
class Best:
    """The setting with the best mean and its difference from each other setting, one family
    Holm-corrected: `clear` when it beats every one of them."""

    label: object
    others: dict  # label -> Difference (best - other)
    beaten: dict  # label -> whether the best is better than it, after Holm's correction

    @property
    def clear(self) -> bool:
        return all(self.beaten.values())


def best_of(values: dict, lower_is_better: bool = True) -> Best | None:
    """The best of k settings ({label: {seed: value}}), compared with each of the other k - 1 by
    paired difference as one family; None when fewer than two settings have values."""
    means = {label: estimate(v.values()).mean for label, v in values.items()}
    means = {label: m for label, m in means.items() if math.isfinite(m)}
    if len(means) < 2:
        return None
    best = (min if lower_is_better else max)(means, key=means.get)
    others = family(
        {other: (values[best], values[other]) for other in means if other != best},
        f"comparisons of the best, {best}, with each other setting",
    )
    return Best(best, others, {other: d.favours(lower_is_better) == "a" for other, d in others.items()})


def steps(values: list[Values], name: str = "steps") -> list[Difference]:
    """The paired difference of each setting from the one before it (next - previous), the steps
    one family named `name`."""
    return list(family(dict(enumerate(zip(values[1:], values))), name).values())
