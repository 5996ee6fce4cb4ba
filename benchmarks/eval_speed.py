"""Evaluation speed: FID with the domain extractor, and the importance-weighted NLL bound.

On the real Fashion-MNIST test set with the seed VAE's architecture (784-400-20). Timings do
not depend on the weights, so the VAE and the CNN are untrained here: what is timed is exactly
the per-run work (draw 10,000 samples, decode, extract features, covariance, Fréchet distance;
K = 100 importance samples for each of the 10,000 test images). Baselines in the same process:
the same FID with pytorch-fid's InceptionV3 (random weights, same cost), timed on a few hundred
images and scaled to 10,000; and the single-sample negative ELBO for the IW bound.
Targets on the 2-core machine: FID <= 15 s, IW bound <= 60 s. Run: `make bench`.
"""
from __future__ import annotations

import argparse
import time
from unittest import mock

import torch
import torchvision
from pytorch_fid import inception

from toolkit import fid
from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.evaluate import elbo_metrics, iw_nll
from toolkit.models import build
from toolkit.samplers import NormalPrior, generate

FID_TARGET_S, IW_TARGET_S = 15.0, 60.0


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def untrained_inception() -> fid.Extractor:
    """pytorch-fid's InceptionV3 with random weights: the real weights are a download."""
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kw: None), \
            mock.patch.object(torchvision.models.inception.Inception3, "load_state_dict", lambda *args, **kw: None):
        network = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return fid.Extractor("inception", fid.GreyInception(network), "untrained")


def fid_seconds(extractor: fid.Extractor, vae, test_images, n: int) -> float:
    reference = fid.Reference(extractor, extractor.statistics(test_images[:n]), 0.0, "")
    return seconds(lambda: reference.fid(generate(vae, NormalPrior(vae.latent_dim), n)))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--inception-images", type=int, default=200, help="images timed through Inception")
    args = parser.parse_args()
    torch.manual_seed(0)
    test = load_splits("fashion-mnist", args.data_dir).test
    vae = build(RunConfig(), "cpu").eval()
    domain = fid.Extractor("fmnist-cnn", fid.CnnFeatures(fid.DomainCNN()), "untrained")

    cnn_s = fid_seconds(domain, vae, test.images, args.samples)
    inception_s = fid_seconds(untrained_inception(), vae, test.images, args.inception_images)
    inception_s *= args.samples / args.inception_images
    print(f"FID, {args.samples} samples, fmnist-cnn: {cnn_s:6.1f} s  (target {FID_TARGET_S:g} s: "
          f"{FID_TARGET_S / cnn_s:.1f}x headroom)")
    print(f"FID, {args.samples} samples, inception (scaled from {args.inception_images}): {inception_s:6.0f} s  "
          f"-> fmnist-cnn is {inception_s / cnn_s:.0f}x faster")

    iw_s = seconds(lambda: iw_nll(vae, test, "bernoulli", samples=100))
    elbo_s = seconds(lambda: elbo_metrics(vae, test, "bernoulli", 1.0))
    print(f"IW bound, K=100, {len(test)} test images: {iw_s:6.1f} s  (target {IW_TARGET_S:g} s: "
          f"{IW_TARGET_S / iw_s:.1f}x headroom)")
    print(f"negative ELBO, 1 sample: {elbo_s:6.2f} s  -> the K=100 bound costs {iw_s / elbo_s:.0f}x the ELBO")


if __name__ == "__main__":
    main()
