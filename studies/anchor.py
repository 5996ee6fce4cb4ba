"""The likelihood code's outside anchor: a linear VAE with a Gaussian likelihood and learned σ, whose
decoder is probabilistic PCA's generative model, trained on Fashion-MNIST until validation stops
improving; its exact test log-likelihood and ELBO (closed forms, toolkit.ppca) beside the toolkit's
own IW bound at K = 1, 10, 100, 1,000 and 5,000 on every test image. Writes reports/anchor/README.md.

--published also trains toolkit.anchor.COMPARISON, the run meant to be set beside a published
likelihood: the reference MLP VAE (784-400-20, standard normal prior) on dynamically binarised pixels,
its IW bound with K = 1,000 on every test image. It was not run for the committed report: no
published number could be read to set it beside (the report says why), and on this 2-core CPU,
shared with other work (load 5), an epoch of it took 71 to 85 s and its bound on every test image
would take about 9.5 minutes (1,000 samples of 500 images: 28 s, in bf16); the same MLP trains at
about 1.5 s an epoch on an idle 2-core EPYC (the β sweep's report), but published models of this
kind train far longer (Burda et al. 2015: 3,280 passes over the data).
Run: python studies/anchor.py [--quick] [--published]
"""

import argparse
import dataclasses

from toolkit.anchor import COMPARISON, KS, LINEAR, anchor_run, finished_run
from toolkit.commands import command
from toolkit.reports import write_report

QUICK = {"epochs": 2, "limit": 2000}  # --quick: a smoke run, its bound at K up to 100
QUICK_KS = (1, 10, 100)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 epochs on 2,000 images, K up to 100")
    parser.add_argument("--published", action="store_true", help="also train the published likelihood's comparison")
    parser.add_argument("--data-dir", default=None, help="directory holding the IDX files")
    parser.add_argument("--out", default=None, help="report directory (default: reports/<experiment>)")
    args = parser.parse_args()
    experiment = "anchor-quick" if args.quick else "anchor"
    quick = QUICK if args.quick else {}
    with command("rerun the same command: finished runs are kept"):
        anchor_run(dataclasses.replace(LINEAR, **quick), experiment, QUICK_KS if args.quick else KS, args.data_dir)
        if args.published:
            finished_run(dataclasses.replace(COMPARISON, **quick), experiment, args.data_dir)
        doc, path = write_report("anchor", experiment, out=args.out)
    print(doc.main_table)
    print(f"\nreport: {path}; MLflow experiment '{experiment}' (browse with `toolkit ui`)")


if __name__ == "__main__":
    main()
