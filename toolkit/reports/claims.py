"""Findings as sentences that say only what the seeds resolve, and the comparisons they rest on.

A `Claims` is filled by a report kind while it words its findings: each comparison it states is
kept as a row of the report's comparisons table (what, which settings, n, the difference, its
interval and level, the family it was judged in, the verdict), so a reader can check every word
against its numbers. Every comparison belongs to a family, Holm-corrected within it
(`stats.family`): the comparisons of a finding or of a table against its reference, the steps
of a trend, a best of k against the other k - 1. A difference is called only when it survives
that correction (`stats.Difference.clear`), and each finding names its n and its family.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from toolkit.reports.document import Document, number
from toolkit.reports.stats import LEVEL, Difference, best_of, estimate, family, steps

ONE_SEED = (
    "Every setting here has a single seed, so no difference is resolved and no setting is named "
    "better; rerun the study with `--seeds 3` (it keeps the runs it has) for intervals."
)


NONE_CONVERGED = (
    "No run here converged: every one stopped at its epoch limit with its validation loss still improving, "
    "so each comparison below may change with longer training."
)


def sentence(text: str) -> str:
    """`text` as a sentence: capitalised, with a full stop; '' stays ''."""
    return f"{text[0].upper()}{text[1:]}." if text else ""


def seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def interval(d: Difference, fmt: str = ".2f") -> str:
    """'-12.5 [-13.1, -11.9]', the level named when it is not 95 %; just the mean without two seeds;
    '+1.00 at every seed (n = 3, exact p = 0.25)' for a difference without spread (no interval)."""
    if d.n < 2:
        return f"{number(d.mean, fmt)} (n = {d.n}, no interval)"
    if d.constant:
        return f"{d.mean:+{fmt}} at every seed (n = {d.n}, exact p = {d.p:.3g})"
    level = "" if math.isclose(d.level, LEVEL) else f" at the {100 * d.level:.3g} % Holm level"
    return f"{d.mean:+{fmt}} [{d.low:{fmt}}, {d.high:{fmt}}]{level}"


def basis(differences: list[Difference]) -> str:
    """What the finding on `differences` (one family's) rests on: 'n = 3 seeds; Holm over the 66
    comparisons of the table against the baseline' (the seeds' range where they differ), or 'n = 3
    seeds; no correction: alone in its family', or '…; no test without two seeds' where none has a p."""
    ns = sorted({d.n for d in differences})
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    d = differences[0]
    if d.size > 1:
        correction = f"Holm over the {d.size} {d.family}"
    else:
        correction = "no correction: alone in its family" if d.size else "no test without two seeds"
    return f"n = {n} seed{'s' if ns[-1] != 1 else ''}; {correction}"


def unconverged(sides: dict) -> str:
    """The settings among `sides` (label: its values by seed, as `RunSet.by_seed` gives them, which
    count the runs that did not converge) with runs that did not converge: 'the VAE 1 of 3'; ''
    when every run converged."""
    return ", ".join(
        f"{label} {v.unconverged} of {v.runs}" for label, v in sides.items() if getattr(v, "unconverged", 0)
    )


class Comparison(NamedTuple):
    """Two settings compared on one quantity: `lower_is_better` None for a quantity without a
    better direction (a KL, a count of units); `context` (e.g. the architecture) goes with `what`
    into the comparisons table only."""

    what: str
    a: str
    b: str
    values_a: dict
    values_b: dict
    lower_is_better: bool | None
    fmt: str = ".2f"
    context: str = ""


class Said(NamedTuple):
    """A comparison in words, which side it found better ('a', 'b', or None: not resolved, or a
    quantity without a better direction), and its difference as its family judged it."""

    text: str
    better: str | None
    difference: Difference


class Claims:
    """The comparisons a report's findings state, kept as the rows of one table."""

    def __init__(self, runs=None):
        """`runs`, the report's `RunSet`: when none of them converged, the findings say so once
        (`opening`) instead of after every comparison."""
        self.rows: list[dict[str, str]] = []
        self.none_converged = runs is not None and not runs.converged().any()

    def opening(self, several_seeds: bool) -> list[str]:
        """The findings' first sentences: that no difference is resolved when no setting has two
        seeds (ONE_SEED), that none of the runs converged (NONE_CONVERGED)."""
        return ([] if several_seeds else [ONE_SEED]) + ([NONE_CONVERGED] if self.none_converged else [])

    def not_converged(self, sides: dict) -> str:
        """'; runs that did not converge: the VAE 1 of 3', what a finding on `sides` adds; '' when
        all did, or when none in the report did (`opening` says it once)."""
        found = "" if self.none_converged else unconverged(sides)
        return f"; runs that did not converge: {found}" if found else ""

    def record(
        self, what: str, a: str, b: str, d: Difference, verdict: str, fmt: str = ".2f", sides: dict | None = None
    ) -> Difference:
        """A comparison's row; `sides` (a and b: their values by seed) marks one whose runs did not all converge."""
        note = unconverged(sides or {})
        converged = "none" if self.none_converged else f"not all: {note} runs not converged" if note else "all"
        self.rows.append(
            {
                "what": what,
                "a": a,
                "b": b,
                "seeds": str(d.n),
                "a − b": interval(d, fmt),
                "family": d.family or "alone",
                "comparisons": str(d.size),
                "Holm p": number(d.adjusted, ".3g"),
                "verdict": verdict,
                "converged": converged,
            }
        )
        return d

    def compare(self, name: str, comparisons: list[Comparison]) -> list[Said]:
        """Each of `comparisons` in words (`say`), all of them one family named `name` (what they
        compare, e.g. 'comparisons of the AE with the VAE') and Holm-corrected within it."""
        found = family({i: (c.values_a, c.values_b) for i, c in enumerate(comparisons)}, name)
        return [self.say(c, found[i]) for i, c in enumerate(comparisons)]

    def say(self, c: Comparison, d: Difference) -> Said:
        """'by what, a is clearly better than b: 213.1 against 225.6 (a − b −12.5 [−13.1, −11.9];
        n = 3 seeds; Holm over …)', or 'by what, a and b are not resolved with 3 seeds: …', for
        `d`, the comparison's difference as its family judged it."""
        topic = f"{c.what} ({c.context})" if c.context else c.what
        mean_a, mean_b = estimate(c.values_a.values()).mean, estimate(c.values_b.values()).mean
        sides = {c.a: c.values_a, c.b: c.values_b}
        numbers = (
            f"{number(mean_a, c.fmt)} against {number(mean_b, c.fmt)} "
            f"({c.a} − {c.b} {interval(d, c.fmt)}; {basis([d])}{self.not_converged(sides)})"
        )
        side = d.favours(c.lower_is_better) if c.lower_is_better is not None else None
        if side is not None:
            winner, loser = (c.a, c.b) if side == "a" else (c.b, c.a)
            self.record(topic, c.a, c.b, d, f"{winner} better", c.fmt, sides)
            return Said(f"by {c.what}, {winner} is clearly better than {loser}: {numbers}", side, d)
        if d.clear:  # a quantity without a better direction
            word = "higher" if d.mean > 0 else "lower"
            self.record(topic, c.a, c.b, d, f"{c.a} {word}", c.fmt, sides)
            return Said(f"{c.what} is clearly {word} for {c.a} than for {c.b}: {numbers}", None, d)
        self.record(topic, c.a, c.b, d, "not resolved", c.fmt, sides)
        return Said(f"by {c.what}, {c.a} and {c.b} are not resolved with {seeds(d.n)}: {numbers}", None, d)

    def best(self, what: str, values: dict, lower_is_better: bool, fmt: str = ".2f") -> str:
        """Which of several settings ({label: {seed: value}}) has the best mean, and whether it
        beats each other one after Holm's correction; names the settings it does not beat."""
        found = best_of(values, lower_is_better)
        if found is None:
            return ""
        word = "lowest" if lower_is_better else "highest"
        mean = estimate(values[found.label].values()).mean
        for other, d in sorted(found.others.items(), key=lambda item: (math.isnan(item[1].p), item[1].p)):
            verdict = f"{found.label} better" if found.beaten[other] else "not resolved"
            sides = {str(found.label): values[found.label], str(other): values[other]}
            self.record(what, str(found.label), str(other), d, verdict, fmt, sides)
        k, on = len(found.others), basis(list(found.others.values())) + self.not_converged(values)
        if found.clear:
            return (
                f"{what} is {word} at {found.label} ({number(mean, fmt)}), clearly better than each of the other "
                f"{k} (paired by seed; {on})"
            )
        unresolved = [str(o) for o, beaten in found.beaten.items() if not beaten]
        return (
            f"{what} has its {word} mean at {found.label} ({number(mean, fmt)}), but that is not resolved "
            f"against {', '.join(unresolved)} ({on})"
        )

    def trend(self, what: str, labels: list[str], values: list[dict], fmt: str = ".2f") -> str:
        """How `what` moves along ordered settings, its steps one family, stated for the clear steps
        only: 'rises at every step (…)', or 'falls at 4 of 6 steps; not resolved: 4 → 8, … (…)'."""
        moves = steps(values, f"steps of {what}")
        if not moves:
            return ""
        words = []
        for (before, after), d, pair in zip(zip(labels, labels[1:]), moves, zip(values, values[1:])):
            word = ("rises" if d.mean > 0 else "falls") if d.clear else "not resolved"
            self.record(what, after, before, d, word, fmt, dict(zip((before, after), pair)))
            words.append(word)
        clear = [w for w in words if w != "not resolved"]
        unresolved = [f"{a} → {b}" for (a, b), w in zip(zip(labels, labels[1:]), words) if w == "not resolved"]
        on = basis(moves) + self.not_converged(dict(zip(labels, values)))
        if len(set(clear)) == 1 and not unresolved:
            return f"{what} {clear[0]} at every step ({len(moves)} of {len(moves)} clear; {on})"
        counts = (
            ", ".join(f"{w} at {clear.count(w)}" for w in ("falls", "rises") if w in clear) or "moves clearly at none"
        )
        tail = f"; not resolved: {', '.join(unresolved)}" if unresolved else ""
        return f"{what} {counts} of {len(moves)} steps{tail} ({on})"

    def table(self, doc: Document, name: str = "comparisons"):
        """The comparisons the findings rest on, as a table (and CSV)."""
        if not self.rows:
            return
        doc.heading("Comparisons")
        doc.text(
            f"Every comparison the findings state: a − b paired by seed (the seeds both have), its mean and "
            f"{100 * LEVEL:.0f} % Student-t interval. Each belongs to a family of comparisons (its columns: what "
            "they compare and how many have a p), Holm-corrected within it: the i-th smallest of its m p-values "
            f"is held to {1 - LEVEL:.2g} / (m − i), from i = 0 until one fails, so that the chance of calling any "
            f"difference of the family where there is none stays below {1 - LEVEL:.2g}. *Clear* means it "
            "survives (its Holm p is at most that); anything else is not resolved with these seeds. Its interval "
            "is at the level its step gives it, so one after the first that fails may exclude zero and still "
            "not be resolved. A difference that is the same at every seed has no spread and no t interval: it "
            "is judged by the exact sign-flip test, whose p is 2 / 2^n (0.25 with three seeds, never clear). "
            "*Converged*: whether every run on both sides stopped by early stopping before its epoch limit; "
            "a comparison of runs still improving when they stopped may change with longer training."
        )
        doc.table(name, pd.DataFrame(self.rows))
