"""The statistics behind every report, on stores of made-up runs (no training): intervals and
paired differences against scipy.stats on the CSV's own values, bold and findings only where an
interval excludes zero, a finding that flips when one seed's value moves, no winner from one seed."""

import io
import itertools
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from synthetic import fake_study

from toolkit.config import RunConfig
from toolkit.reports import build_report, plots
from toolkit.reports.claims import Claims, interval
from toolkit.reports.document import mean_std
from toolkit.reports.stats import best_of, estimate, family, holm, paired

SEEDS = (42, 43, 44)


def table(doc, name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(doc.files[f"{name}.csv"]))


def results_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Results table's rows by their first cell."""
    lines = markdown[markdown.index("## Results") :].splitlines()
    rows = [line for line in lines if line.startswith("| ")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in rows]
    first_table = (
        cells[: next(i for i, row in enumerate(cells[2:], 2) if len(row) != len(cells[0]))]
        if any(len(row) != len(cells[0]) for row in cells)
        else cells
    )
    return {" ".join(row[:2]): dict(zip(cells[0], row)) for row in first_table[2:]}


def ae_vs_vae(store_name: str, recon: dict[str, list[float]], fid: dict[str, list[float]]) -> str:
    """A store of an AE and a VAE, one run per seed, with these test reconstructions and sample FIDs."""
    runs = []
    for model in ("vae", "ae"):
        for seed, r, f in zip(SEEDS, recon[model], fid[model]):
            metrics = {"test/recon": r, "test/mse": r / 20_000, "fid/fmnist-cnn/samples_fitted_gaussian": f}
            if model == "vae":
                metrics |= {
                    "test/kl": 16.0,
                    "test/neg_elbo": r + 16,
                    "test/active_units": 14.0,
                    "test/informative_units": 12.0,
                }
            runs.append((RunConfig(model=model, seed=seed), metrics))
    fake_study(store_name, runs)
    return store_name


def test_estimates_and_paired_differences_are_scipys_t_intervals():
    values = [241.2, 241.9, 240.8]
    found = estimate(values)
    low, high = scipy.stats.t.interval(0.95, 2, np.mean(values), scipy.stats.sem(values))
    assert (found.mean, found.sd, found.n) == pytest.approx((np.mean(values), np.std(values, ddof=1), 3))
    assert (found.low, found.high) == pytest.approx((low, high))
    a, b = {42: 10.0, 43: 12.5, 44: 11.0, 45: 30.0}, {42: 9.0, 43: 11.0, 44: 10.8}  # 45: not shared, not used
    d = paired(a, b)
    result = scipy.stats.ttest_rel([10.0, 12.5, 11.0], [9.0, 11.0, 10.8])
    assert (d.n, d.mean, d.p) == (3, pytest.approx(0.9), pytest.approx(result.pvalue))
    assert (d.low, d.high) == pytest.approx(tuple(result.confidence_interval(0.95)))
    assert not d.clear  # +0.9 [-0.47, 2.27]
    assert not paired({1: 2.0, 2: 3.0}, {1: 1.0, 2: 2.0}).clear  # the same at both seeds: exact p = 0.5
    assert not paired({1: 2.0}, {1: 1.0}).clear  # one seed: no interval, nothing called


def sign_flip_p(differences: list[float]) -> float:
    """The exact sign-flip permutation test, by brute force: the share of the 2^n sign patterns
    whose sum is as far from zero as the observed one."""
    sums = [
        abs(sum(s * d for s, d in zip(signs, differences)))
        for signs in itertools.product((1, -1), repeat=len(differences))
    ]
    return sum(total >= abs(sum(differences)) - 1e-12 for total in sums) / len(sums)


def test_a_difference_the_same_at_every_seed_is_judged_by_the_exact_test_not_called_with_three_seeds():
    d = paired({42: 11.0, 43: 12.0, 44: 13.0}, {42: 12.0, 43: 13.0, 44: 14.0})  # one informative unit fewer at each
    assert (d.mean, d.n, d.p) == (-1.0, 3, 0.25) and d.p == sign_flip_p([-1.0, -1.0, -1.0])
    assert not d.clear and d.favours(lower_is_better=False) is None
    assert math.isnan(d.low) and math.isnan(d.high)  # no 95 % interval exists for it, not [-1, -1]
    assert interval(d) == "-1.00 at every seed (n = 3, exact p = 0.25)"
    assert paired({s: 2.0 for s in range(5)}, {s: 1.0 for s in range(5)}).p == 0.0625
    assert paired({1: 3.0, 2: 3.0, 3: 3.0}, {1: 3.0, 2: 3.0, 3: 3.0}).p == 1.0  # no difference at all
    assert paired({1: 2.1, 2: 3.1, 3: 0.3}, {1: 1.0, 2: 2.0, 3: -0.8}).p == 0.25  # equal but for float rounding
    assert paired({s: 2.0 for s in range(6)}, {s: 1.0 for s in range(6)}).clear  # p = 1/32: six seeds resolve it


def eleven_at_p_004() -> tuple[dict, dict]:
    """Eleven settings and a baseline whose paired t-test against each gives p of about 0.04
    (differences c - 1, c, c + 1 with c near 2.8: t = c √3 on 2 degrees of freedom)."""
    base = {42: 100.0, 43: 101.0, 44: 99.5}
    return {
        f"s{k}": {s: base[s] + 2.8 + 0.005 * k + e for s, e in zip(SEEDS, (-1.0, 0.0, 1.0))} for k in range(11)
    }, base


def test_eleven_differences_clear_alone_are_none_of_them_clear_as_one_family():
    settings, base = eleven_at_p_004()
    alone = [paired(values, base) for values in settings.values()]
    assert all(0.035 < d.p < 0.045 and d.clear for d in alone)
    found = family({k: (values, base) for k, values in settings.items()}, "comparisons of the table")
    assert not any(d.clear for d in found.values())
    assert min(d.adjusted for d in found.values()) == pytest.approx(11 * min(d.p for d in alone))
    assert {(d.family, d.size) for d in found.values()} == {("comparisons of the table", 11)}
    levels = sorted(d.level for d in found.values())  # each interval at its Holm step's level
    assert levels == pytest.approx(sorted(1 - 0.05 / (11 - i) for i in range(11)))


def test_the_steps_of_a_trend_are_one_family():
    step = {s: 2.8 + e for s, e in zip(SEEDS, (-1.0, 0.0, 1.0))}  # p about 0.04 alone
    values = [{s: 100.0 + i * step[s] for s in SEEDS} for i in range(4)]
    assert all(paired(after, before).clear for before, after in zip(values, values[1:]))
    claims = Claims()
    assert claims.trend("x", ["a", "b", "c", "d"], values) == (
        "x moves clearly at none of 3 steps; not resolved: a → b, b → c, c → d "
        "(n = 3 seeds; Holm over the 3 steps of x)"
    )
    assert {(row["family"], row["comparisons"]) for row in claims.rows} == {("steps of x", "3")}


def test_holm_steps_down_from_the_smallest_p_until_one_fails():
    adjusted = holm([0.01, 0.04, 0.03])  # 0.01 <= 0.05/3; 0.03 > 0.05/2, and the step-down stops there
    assert adjusted == pytest.approx([0.03, 0.06, 0.06]) and [q <= 0.05 for q in adjusted] == [True, False, False]
    assert holm([0.01, 0.02, 0.04]) == pytest.approx([0.03, 0.04, 0.04])  # all rejected: 0.0167, 0.025, 0.05
    assert holm([0.001, math.nan]) == [0.001, pytest.approx(math.nan, nan_ok=True)]  # no p: not counted


def test_a_best_of_k_is_named_only_when_it_beats_every_other_after_holm():
    far = {"a": {1: 1.0, 2: 1.1, 3: 0.9}, "b": {1: 5.0, 2: 5.2, 3: 4.9}, "c": {1: 9.0, 2: 9.1, 3: 9.3}}
    found = best_of(far)
    assert found.label == "a" and found.clear
    first, second = sorted(found.others.values(), key=lambda d: d.p)  # Holm: α/2 for the smaller p, then α
    assert (first.level, second.level) == pytest.approx((1 - 0.05 / 2, 0.95))
    close = {**far, "b": {1: 1.2, 2: 0.95, 3: 1.05}}  # b within a's noise
    found = best_of(close)
    assert not found.clear and found.beaten == {"b": False, "c": True}


def test_a_difference_inside_the_noise_is_neither_bold_nor_called(store):
    ae_vs_vae(
        "noisy",
        {"vae": [225.6, 225.1, 226.0], "ae": [213.1, 213.3, 212.9]},
        {"vae": [90.5, 89.0, 92.0], "ae": [84.8, 91.0, 79.5]},
    )  # FID: AE lower on average, within noise
    doc = build_report("ae-vs-vae", "noisy")
    text = doc.markdown()
    rows = results_rows(text)
    assert rows["AE 3"]["recon (nats)"].startswith("**") and not rows["VAE 3"]["recon (nats)"].startswith("**")
    fid = "FID fitted-Gaussian samples (fmnist-cnn)"
    assert not rows["AE 3"][fid].startswith("**") and not rows["VAE 3"][fid].startswith("**")
    assert "By reconstruction (nats), the AE is clearly better than the VAE" in text
    assert re.search(
        r"By FID \(fmnist-cnn\) of samples from a Gaussian fitted to the codes, the AE and the VAE are not resolved "
        r"with 3 seeds",
        text,
    )
    comparisons = table(doc, "comparisons")
    fid_row = comparisons[comparisons["what"].str.startswith("FID")].iloc[0]
    d = scipy.stats.ttest_rel([84.8, 91.0, 79.5], [90.5, 89.0, 92.0]).confidence_interval(0.95)
    assert fid_row["verdict"] == "not resolved" and f"[{d.low:.1f}, {d.high:.1f}]" in fid_row["a − b"]


def test_inflating_one_seed_flips_a_finding(store):
    recon = {"vae": [225.6, 225.1, 226.0], "ae": [213.1, 213.3, 212.9]}
    clear = {"vae": [90.5, 90.0, 91.0], "ae": [84.8, 84.0, 85.5]}
    ae_vs_vae("steady", recon, clear)
    assert "the AE is clearly better than the VAE: 84.8" in build_report("ae-vs-vae", "steady").markdown()
    ae_vs_vae("one-bad-seed", recon, {**clear, "ae": [84.8, 84.0, 110.0]})  # one AE seed's samples go bad
    text = build_report("ae-vs-vae", "one-bad-seed").markdown()
    assert "the AE is clearly better than the VAE: 84.8" not in text
    assert re.search(r"By FID .*, the AE and the VAE are not resolved with 3 seeds: 92\.9 against 90\.5", text)


def beta_sweep(
    store_name: str, seeds: tuple[int, ...], iw_standard_errors: tuple[float, ...] = (), tags: list[dict] | None = None
) -> str:
    """β 0.5, 1, 2 for each seed; given `iw_standard_errors` (one per run), each run's IW bound is
    one estimated from a subset of the test images, with that standard error. Given `tags` (the
    first runs' extra tags), every run also logs its seconds per epoch."""
    rng = np.random.default_rng(0)
    runs = []
    for seed in seeds:
        for beta in (0.5, 1.0, 2.0):
            kl, recon = 30 / beta + rng.normal(0, 0.2), 220 + 4 * beta + rng.normal(0, 0.2)
            runs.append(
                (
                    RunConfig(beta=beta, seed=seed),
                    {
                        "test/kl": kl,
                        "test/recon": recon,
                        "test/neg_elbo": kl + recon + (5 if beta == 1 else 0),
                        "test/nll_iw": kl + recon - 2,
                        "test/active_units": 20.0,
                        "test/informative_units": 20.0,
                        "test/mse": 0.01,
                        **{f"test/kl_dim/{d:02d}": kl / 20 for d in range(20)},
                    },
                )
            )
    for (_, metrics), error in zip(runs, iw_standard_errors):
        metrics["test/nll_iw_se"] = error
    for _, metrics in runs if tags is not None else ():
        metrics["time/mean_epoch_s"] = 1.8
    fake_study(store_name, runs, tags=tags or ())
    return store_name


def test_a_one_seed_study_names_no_winner_and_says_how_to_get_intervals(store):
    text = build_report("beta-sweep", beta_sweep("single", (42,))).markdown()
    assert "no difference is resolved and no setting is named better; rerun the study with `--seeds 3`" in text
    assert "**" not in text.split("## Results")[1].split("## Rate")[0].replace("**Bold**", "")
    assert "falls at every step" not in text and "not resolved" in text
    assert "One seed per setting: the cells are single runs, without intervals, and nothing is bold" in text


def test_three_seeds_state_the_clear_steps_of_a_trend_and_the_best_setting(store):
    doc = build_report("beta-sweep", beta_sweep("triple", SEEDS))
    text = doc.markdown()
    assert "the rate falls at every step (2 of 2 clear; n = 3 seeds; Holm over the 2 steps of the rate)" in text
    assert "the distortion rises at every step (2 of 2 clear; n = 3 seeds; Holm over the 2 steps of" in text
    assert "The negative ELBO is lowest at β = 2" in text or "The negative ELBO is lowest at β = 0.5" in text
    rows = table(doc, "results")
    kl = {beta: rows.loc[rows["beta"] == beta, "test/kl"].iloc[0] for beta in (0.5, 1.0, 2.0)}
    assert kl[0.5] > kl[1.0] > kl[2.0]


def test_every_report_states_the_settings_its_runs_share_and_what_its_nats_compare_with(store):
    text = build_report("beta-sweep", beta_sweep("stated", SEEDS)).markdown()
    settings = text[text.index("## Settings") : text.index("## Results")]
    assert "`latent_dim` 20" in settings and "`epochs` 30" in settings and "`iw_samples` 100" in settings
    assert "| varied | `beta` 0.5 / 1.0 / 2.0 |" in settings
    resolution = "with 3 seeds a paired difference is resolved only where its mean exceeds 2.48 standard deviations"
    assert f"| seeds | 42, 43, 44 (3): {resolution}" in settings
    assert "| training images | 54,000 |" in settings and "best epoch 30 in 9 runs" in settings
    assert "9 of 9 converged" in settings and "K = 100 importance samples" in settings
    assert "grey levels in [0, 1], not binarised" in settings and "binarised MNIST: about 80–90 nats" in settings
    assert "FID GMM samples" not in text  # no such column: no caption for it


def test_an_iw_bound_estimated_from_a_subset_of_the_test_images_says_so_with_its_standard_errors(store):
    every = build_report("beta-sweep", beta_sweep("every-image", SEEDS)).markdown()
    assert "estimated for" not in every and "`test/nll_iw_se`" not in every and "on every test image" in every
    errors = tuple(0.06 + 0.001 * i for i in range(9))
    text = build_report("beta-sweep", beta_sweep("subset", SEEDS, errors)).markdown()
    settings = text[text.index("## Settings") : text.index("## Results")]
    assert "`iw_images` 2000" in settings
    assert (
        "K = 100 importance samples per image, computed on 2000 test images drawn at random and estimated for the "
        "whole test set as its −ELBO less their mean gap to the bound, standard error 0.06–0.068 nats "
        "(`test/nll_iw_se`, the column *IW bound s.e.*) (9 runs); precision: fp32"
    ) in settings


def test_the_times_of_runs_trained_together_say_what_they_measure(store):
    text = build_report("beta-sweep", beta_sweep("timed", SEEDS, tags=[{"group_size": "3"}] * 6)).markdown()
    settings = text.split("## Settings")[1].split("## Results")[0]
    assert "| machine (times) | a test CPU, torch threads: 2, torch 2.14.1; wall seconds per epoch" in settings
    assert "6 of 9 runs trained together in groups of 3 (a run's share of its group's training pass" in settings
    assert "trained together" not in build_report("beta-sweep", beta_sweep("timed-alone", SEEDS, tags=[{}])).markdown()


def test_the_diagnostics_tabulate_the_rate_split_as_brackets_and_read_no_trend_from_a_bound(store):
    runs = []
    for seed in (42, 43):
        for beta, (low, high) in ((0.5, (9.9, 17.5)), (1.0, (8.9, 12.0)), (2.0, (6.8, 7.4))):
            runs.append(
                (
                    RunConfig(beta=beta, seed=seed),
                    {
                        "test/kl": 20.0,
                        "test/recon": 230.0,
                        "test/mutual_info_low": low + seed / 1e3,
                        "test/mutual_info_high": high + seed / 1e3,
                        "test/marginal_kl_low": 20 - high,
                        "test/marginal_kl_high": 20 - low,
                        "test/mutual_info_mixture": min(low, 9.2),
                        "test/mutual_info_pooled": low,
                        "test/mutual_info_pooled_ceiling": 9.95,
                        "test/probe_accuracy": 0.8,
                        **{f"test/kl_dim/{d:02d}": 1.0 for d in range(20)},
                    },
                )
            )
    fake_study("brackets", runs)
    text = build_report("beta-sweep", "brackets").markdown()
    latent = text.split("## Latent space and samples")[1]
    assert "I(x; z) is measured at β 2, model VAE; elsewhere only bracketed." in latent
    assert "At β 0.5, model VAE the pooled estimate is within 0.1 nats of its ceiling, log N = 9.95 nats" in latent
    rows = [line for line in latent.splitlines() if line.startswith("| 0.5 | VAE")]
    assert rows and "in [9.94, 17.54]" in rows[0] and "in [2.50, 10.10]" in rows[0]
    assert "7.14 (measured: [6.84, 7.44])" in latent and "![the rate and the brackets of its two parts" in latent
    assert (
        "the information I(x; z)" not in text
        and "I(x; z) is β = 0.5: in [9.94, 17.54]; β = 1: in [8.94, 12.04]; β = 2: 7.14 (measured" in text
    )


def test_the_rate_split_figure_draws_the_ceilings_log_n_of_both_mixture_estimates():
    ends = {"mutual_info_low": 9.0, "mutual_info_high": 15.0, "marginal_kl_low": 5.0, "marginal_kl_high": 11.0}
    settings = pd.DataFrame(
        {f"test/{key}": [value] for key, value in ends.items()}
        | {"test/kl": [20.0], "test/mutual_info_mixture": [9.2], "test/mutual_info_pooled": [11.0]}
    )
    fig = plots.rate_split(settings, ["β 1"], {"log N, test": 9.21, "log N, test and training": 11.07})
    drawn = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].lines}
    assert drawn["log N, test"] == [9.21, 9.21] and drawn["log N, test and training"] == [11.07, 11.07]
    plt.close(fig)


def test_mean_and_spread_print_the_spread_to_two_significant_digits():
    assert mean_std(225.6, 0.32, 3, ".1f") == "225.6 ± 0.32"
    assert mean_std(0.01247, 0.000093, 3, ".5f") == "0.01247 ± 0.000093"
    assert mean_std(14.0, 0.0, 3, ".3g") == "14 ± 0"
    assert mean_std(9.21, 2.1e-10, 3, ".2f") == "9.21 ± 2.1e-10"  # all at a ceiling: no wall of zeros
    assert mean_std(48.04, math.nan, 1, ".1f") == "48.0"  # one seed: the value alone
    assert mean_std(math.nan, math.nan, 0) == ""


def test_when_no_run_converged_the_findings_say_so_once_and_not_after_every_comparison(store):
    runs = [
        (
            RunConfig(beta=beta, seed=seed),
            {"test/kl": 30 / beta + seed / 100, "test/recon": 220 + 4 * beta + seed % 3}
            | {f"test/kl_dim/{d:02d}": 1.0 for d in range(20)},
        )
        for seed in SEEDS
        for beta in (0.5, 1.0, 2.0)
    ]
    fake_study("unconverged", [(config, metrics | {"converged": 0.0}) for config, metrics in runs])
    doc = build_report("beta-sweep", "unconverged")
    found = doc.markdown().split("## Findings")[1].split("\n## ")[0]
    assert found.count("No run here converged") == 1 and "did not converge" not in found
    assert set(table(doc, "comparisons")["converged"]) == {"none"}
    fake_study("one unconverged", runs[:-1] + [(runs[-1][0], runs[-1][1] | {"converged": 0.0})])
    found = build_report("beta-sweep", "one unconverged").markdown().split("## Findings")[1]
    assert "No run here converged" not in found and "runs that did not converge: β = 2 1 of 3" in found


def test_a_trend_states_its_clear_steps_and_names_the_others():
    low, mid, high = {42: 1.0, 43: 1.1, 44: 0.9}, {42: 2.0, 43: 2.3, 44: 1.8}, {42: 3.1, 43: 3.3, 44: 2.8}
    noisy = {42: 2.5, 43: 1.6, 44: 2.1}  # against `mid`: +0.5, -0.7, +0.3, its interval spans zero
    claims = Claims()
    on = "n = 3 seeds; Holm over the 2 steps of"
    assert claims.trend("x", ["a", "b", "c"], [low, mid, high]) == f"x rises at every step (2 of 2 clear; {on} x)"
    assert claims.trend("y", ["a", "b", "c"], [high, mid, low]) == f"y falls at every step (2 of 2 clear; {on} y)"
    assert (
        claims.trend("z", ["a", "b", "c"], [low, mid, noisy])
        == f"z rises at 1 of 2 steps; not resolved: b → c ({on} z)"
    )
    assert [row["verdict"] for row in claims.rows] == ["rises", "rises", "falls", "falls", "rises", "not resolved"]
    assert Claims().trend("w", ["a"], [low]) == ""


def collapse_store(store_name: str) -> str:
    """A posterior-collapse study of twelve settings (warm-up 0-3 epochs by free bits 0, 0.25, 0.5),
    three seeds each: the baseline's −ELBO is beaten by each other setting with p about 0.04 alone,
    and warm-up 1 without free bits has one informative unit fewer at every seed. The informative
    units carry 1.5 nats of KL each and at least 0.8 nats of information; the next dimension has as
    much KL but at most 0.05 nats of information, the rest 0.01 nats of KL."""
    settings, base = eleven_at_p_004()
    others = [(w, fb) for w in range(4) for fb in (0.0, 0.25, 0.5) if (w, fb) != (0, 0.0)]
    neg_elbo = {(0, 0.0): base} | {
        setting: {s: 2 * base[s] - v for s, v in values.items()} for setting, values in zip(others, settings.values())
    }
    runs = []
    for (warmup, free_bits), values in neg_elbo.items():
        for seed in SEEDS:
            informative = 11.0 if (warmup, free_bits) == (1, 0.0) else 12.0
            metrics = {
                "test/neg_elbo": values[seed],
                "test/recon": values[seed] - 20,
                "test/kl": 20.0,
                "test/active_units": 14.0,
                "test/informative_units": informative,
                **{f"test/kl_dim/{d:02d}": (1.5 if d <= informative else 0.01) for d in range(20)},
                **{f"test/mutual_info_dim_low/{d:02d}": (0.8 if d < informative else 0.0) for d in range(20)},
                **{f"test/mutual_info_dim_high/{d:02d}": (1.5 if d < informative else 0.05) for d in range(20)},
            }
            runs.append((RunConfig(warmup_epochs=warmup, free_bits=free_bits, seed=seed), metrics))
    fake_study(store_name, runs)
    return store_name


def test_the_table_against_the_baseline_is_one_family_and_bolds_only_what_survives_it(store):
    doc = build_report("posterior-collapse", collapse_store("collapse"))
    text = doc.markdown()
    against = text.split("## Against the baseline")[1].split("\n## ")[0]
    on = "n = 3 seeds; Holm over the 44 comparisons of the table against the baseline"  # 11 settings × 4
    assert on in against and "**" not in against.split("|", 1)[1]  # each −ELBO p ≈ 0.04 alone: none survives
    assert "-1.00 at every seed (n = 3, exact p = 0.25)" in against  # the unit lost at every seed
    assert f"No setting has clearly more active or informative units than the baseline ({on})." in text
    comparisons = table(doc, "comparisons")
    assert set(comparisons["family"]) == {"comparisons of the table against the baseline"}
    assert set(comparisons["comparisons"]) == {44} and set(comparisons["verdict"]) == {"not resolved"}


def test_the_kl_of_informative_units_counts_the_units_whose_own_information_is_bracketed_above_the_threshold(
    store,
):
    text = build_report("posterior-collapse", collapse_store("split")).markdown()
    rows = results_rows(text).values()
    # 1.5 nats in each of 12 (11) informative dims; the 1.5 of one more dim with no information is the rest's
    assert {(row["KL of informative dims (nats)"], row["KL of the other dims (nats)"]) for row in rows} == {
        ("18.0 ± 0", "1.57 ± 0"),
        ("16.5 ± 0", "1.58 ± 0"),
    }
    assert "informative* when its own information I(x; z_u) exceeds 0.1 nats for certain" in text


def test_units_active_but_not_informative_are_described_by_their_kl_not_called_empty(store):
    runs = []
    for seed, active, elbo in zip(SEEDS, (10.0, 11.0, 10.0), (240.0, 241.0, 240.5)):
        for free_bits, extra in ((0.0, 0.0), (0.25, 6.0 + (seed - 43) / 2)):  # +6, +6.5 or +5.5 active units
            floor = free_bits or 0.01
            kl = [1.5] * 8 + [floor] * 8 + [0.01] * 4  # 8 informative dims, 8 more at the free-bits floor
            metrics = {
                "test/kl": sum(kl),
                "test/neg_elbo": elbo + 4 * free_bits,
                "test/recon": elbo - sum(kl),
                "test/active_units": active + extra,
                "test/informative_units": 8.0,
                **{f"test/kl_dim/{d:02d}": k for d, k in enumerate(kl)},
                **{f"test/mutual_info_dim_low/{d:02d}": (0.8 if d < 8 else 0.0) for d in range(20)},
                **{f"test/mutual_info_dim_high/{d:02d}": min(k, 1.5) for d, k in enumerate(kl)},
            }
            runs.append((RunConfig(free_bits=free_bits, seed=seed), metrics))
    fake_study("active only", runs)
    found = build_report("posterior-collapse", "active only").markdown().split("## Findings")[1]
    assert "Clearly more active units than the baseline" in found and "warm-up 0, free bits 0.25" in found
    assert (
        "Of these, not clearly more informative ones: warm-up 0, free bits 0.25. Their dimensions that are not "
        "informative (whose own information is not above 0.1 nats for certain), which the active-unit count "
        "includes: warm-up 0, free bits 0.25: 12 dimensions with 2.04 nats of KL together, 0.170 each, against a "
        "free-bits floor of 0.25." in found
    )


def test_the_prior_hole_is_a_diagnostic_never_bold_as_best(store):
    runs = []
    for seed, noise in zip(SEEDS, (-0.5, 0.0, 0.7)):
        for beta, hole in ((0.5, 5.0), (1.0, 20.0), (2.0, 40.0)):  # clearly smallest at β = 0.5
            metrics = {"test/kl": 30 / beta, "test/recon": 220 + 4 * beta, "prior_hole/fmnist-cnn": hole + noise * beta}
            runs.append((RunConfig(beta=beta, seed=seed), metrics | {f"test/kl_dim/{d:02d}": 1.0 for d in range(20)}))
    fake_study("hole", runs)
    text = build_report("beta-sweep", "hole").markdown()
    diagnostics = text.split("## Latent space and samples")[1].split("\n## ")[0]
    assert "prior hole: FID samples − FID q(z) samples (fmnist-cnn)" in diagnostics
    assert "**" not in diagnostics.split("| --- |", 1)[1]  # its smallest value is not bold
    assert "the prior hole, FID (fmnist-cnn) of prior less aggregate-posterior samples rises at every step" in text
    assert not re.search(r"prior hole[^.]*(lowest|best)", text.split("## Findings")[1])
