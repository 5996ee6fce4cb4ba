"""Findings as sentences that say only what the seeds resolve, and the comparisons they rest on.

A `Claims` is filled by a report kind while it words its findings: each comparison it states is
kept as a row of the report's comparisons table (what, which settings, n, the difference, its
interval and level, the verdict), so a reader can check every word against its numbers. A
difference is called only when its interval excludes zero (`stats.Difference.clear`); a best
of k only after Holm's correction for its k - 1 comparisons; a trend only for the steps that
are clear, naming those that are not.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from toolkit.reports.document import Document, number
from toolkit.reports.stats import LEVEL, Difference, best_of, estimate, paired, steps

ONE_SEED = (
    "Every setting here has a single seed, so no difference is resolved and no setting is named "
    "better; rerun the study with `--seeds 3` (it keeps the runs it has) for intervals."
)


def sentence(text: str) -> str:
    """`text` as a sentence: capitalised, with a full stop; '' stays ''."""
    return f"{text[0].upper()}{text[1:]}." if text else ""


def seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def interval(d: Difference, fmt: str = ".2f") -> str:
    """'-12.5 [-13.1, -11.9]', the level named when it is not 95 %; just the mean without two seeds."""
    if d.n < 2:
        return f"{number(d.mean, fmt)} (n = {d.n}, no interval)"
    if d.low == d.high:
        return f"{d.mean:+{fmt}} at every seed"
    level = "" if math.isclose(d.level, LEVEL) else f" at the {100 * d.level:.3g} % Holm level"
    return f"{d.mean:+{fmt}} [{d.low:{fmt}}, {d.high:{fmt}}]{level}"


class Said(NamedTuple):
    """A comparison in words, and which side it found better: 'a', 'b', or None (not resolved, or
    a quantity without a better direction)."""

    text: str
    better: str | None


class Claims:
    """The comparisons a report's findings state, kept as the rows of one table."""

    def __init__(self):
        self.rows: list[dict[str, str]] = []

    def record(self, what: str, a: str, b: str, d: Difference, verdict: str, fmt: str = ".2f") -> Difference:
        self.rows.append(
            {"what": what, "a": a, "b": b, "seeds": str(d.n), "a − b": interval(d, fmt), "verdict": verdict}
        )
        return d

    def compare(
        self,
        what: str,
        a: str,
        b: str,
        values_a: dict,
        values_b: dict,
        lower_is_better: bool | None,
        fmt: str = ".2f",
        context: str = "",
    ) -> Said:
        """'by what, a is clearly better than b: 213.1 against 225.6 (a − b −12.5 [−13.1, −11.9], 3
        seeds)', or 'by what, a and b are not resolved with 3 seeds …'. `context` (e.g. the
        architecture) goes with `what` into the comparisons table only."""
        d = paired(values_a, values_b)
        topic = f"{what} ({context})" if context else what
        mean_a, mean_b = estimate(values_a.values()).mean, estimate(values_b.values()).mean
        numbers = f"{number(mean_a, fmt)} against {number(mean_b, fmt)} ({a} − {b} {interval(d, fmt)}, {seeds(d.n)})"
        side = d.favours(lower_is_better) if lower_is_better is not None else None
        if side is not None:
            winner, loser = (a, b) if side == "a" else (b, a)
            self.record(topic, a, b, d, f"{winner} better", fmt)
            return Said(f"by {what}, {winner} is clearly better than {loser}: {numbers}", side)
        if d.clear:  # a quantity without a better direction (a KL, a count of units)
            self.record(topic, a, b, d, f"{a} {'higher' if d.mean > 0 else 'lower'}", fmt)
            return Said(
                f"{what} is clearly {'higher' if d.mean > 0 else 'lower'} for {a} than for {b}: {numbers}", None
            )
        self.record(topic, a, b, d, "not resolved", fmt)
        return Said(f"by {what}, {a} and {b} are not resolved with {seeds(d.n)}: {numbers}", None)

    def best(self, what: str, values: dict, lower_is_better: bool, fmt: str = ".2f") -> str:
        """Which of several settings ({label: {seed: value}}) has the best mean, and whether it
        beats each other one after Holm's correction; names the settings it does not beat."""
        found = best_of(values, lower_is_better)
        if found is None:
            return ""
        word = "lowest" if lower_is_better else "highest"
        mean = estimate(values[found.label].values()).mean
        for other, d in sorted(found.others.items(), key=lambda item: (math.isnan(item[1].p), item[1].p)):
            self.record(
                what,
                str(found.label),
                str(other),
                d,
                f"{found.label} better (Holm)" if found.beaten[other] else "not resolved",
                fmt,
            )
        k = len(found.others)
        if found.clear:
            return (
                f"{what} is {word} at {found.label} ({number(mean, fmt)}), clearly better than each of the other "
                f"{k} (paired by seed, Holm-corrected for {k} comparisons)"
            )
        unresolved = [str(o) for o, beaten in found.beaten.items() if not beaten]
        return (
            f"{what} has its {word} mean at {found.label} ({number(mean, fmt)}), but with Holm's correction "
            f"for {k} comparisons that is not resolved against {', '.join(unresolved)}"
        )

    def trend(self, what: str, labels: list[str], values: list[dict], fmt: str = ".2f") -> str:
        """How `what` moves along ordered settings, stated for the clear steps only:
        'rises at every step', or 'falls at 4 of 6 steps; not resolved: 4 → 8, …'."""
        moves = steps(values)
        words = []
        for (before, after), d in zip(zip(labels, labels[1:]), moves):
            word = ("rises" if d.mean > 0 else "falls") if d.clear else "not resolved"
            self.record(what, after, before, d, word, fmt)
            words.append(word)
        clear = [w for w in words if w != "not resolved"]
        unresolved = [f"{a} → {b}" for (a, b), w in zip(zip(labels, labels[1:]), words) if w == "not resolved"]
        if not moves:
            return ""
        if len(set(clear)) == 1 and not unresolved:
            return f"{what} {clear[0]} at every step ({len(moves)} of {len(moves)} clear)"
        counts = (
            ", ".join(f"{w} at {clear.count(w)}" for w in ("falls", "rises") if w in clear) or "moves clearly at none"
        )
        tail = f"; not resolved: {', '.join(unresolved)}" if unresolved else ""
        return f"{what} {counts} of {len(moves)} steps{tail}"

    def table(self, doc: Document, name: str = "comparisons"):
        """The comparisons the findings rest on, as a table (and CSV)."""
        if not self.rows:
            return
        doc.heading("Comparisons")
        doc.text(
            f"Every comparison the findings state: a − b paired by seed (the seeds both have), its mean and "
            f"{100 * LEVEL:.0f} % Student-t interval. *Clear* means the interval excludes zero; anything else is "
            "not resolved with these seeds. A best of k is compared with the other k − 1 in Holm's order "
            "(smallest p first), each interval at the level its step gives it; the steps stop at the first "
            "that fails, so the comparisons after it are not resolved even where their own interval "
            "excludes zero."
        )
        doc.table(name, pd.DataFrame(self.rows))
