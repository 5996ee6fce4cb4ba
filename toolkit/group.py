"""Runs trained together: `fit_group` trains the members of a group (MLP runs of one shape on one
dataset) as one model whose weights are stacked along a leading member axis, one batched matrix
product per layer and step for all of them.

Each member keeps what makes it its own run: its settings (β, warm-up, free bits, learning rate,
σ, epochs, patience), its random streams (the initial weights, shuffle order, binarisation and
sampling noise its run alone draws, from the same generators), its epoch metrics, callbacks,
early stopping, best weights and checkpoints, in `train.fit`'s formats. A member that stops (its
epochs done, early stopping, a callback raising, such as a pruned trial, or a non-finite loss)
leaves the stack, and the others go on. Like `train.fit`, this module knows nothing of MLflow or
Optuna."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from toolkit import names
from toolkit.config import RunConfig
from toolkit.evaluate import elbo_metrics
from toolkit.models import AE, Output, build, reparameterize
from toolkit.objectives import beta_at, loss_terms
from toolkit.train import Progress, epoch_metrics, forward_precision

# What every member of a group shares: the shapes of its stacked weights, the batches it is fed and
# (for `pipeline.train_group`, which prepares them once) its data and FID references.
SHARED = (
    "fid",
    "model",
    "architecture",
    "dataset",
    "latent_dim",
    "hidden",
    "likelihood",
    "decoder_scale",
    "binarize",
    "batch_size",
    "limit",
    "precision",
)


def group_key(config: RunConfig) -> tuple | None:
    """Runs with equal keys can train as one group; None for a run that trains alone (conv
    models: their batch norm and convolutions have no batched form here; linear models: nor has
    their head's shared log-variance)."""
    if config.architecture != "mlp":
        return None
    return tuple(getattr(config, name) for name in SHARED)


@dataclass
class Member:
    """One run of a group: its config and hooks as `train.fit` takes them, and once trained its
    `progress` (its model with the best weights, its result) or the `error` that ended it early."""

    config: RunConfig
    callbacks: list = field(default_factory=list)  # callback(epoch, metrics), as `train.fit`'s
    checkpoint: Callable[[dict], None] | None = None  # receives the member's `Progress.state()`
    resume: dict | None = None  # such a state to go on from
    progress: Progress | None = None
    error: Exception | None = None  # a callback's exception (a pruned trial's) or `TrainingDiverged`

    @property
    def model(self):
        return self.progress.model

    @property
    def result(self):
        return self.progress.result

    def done(self) -> bool:
        return self.error is not None or self.progress.finished()


def fit_group(members: list[Member], splits) -> list[Member]:
    """Train `members` (all of one `group_key`) on `splits`, each as `train.fit` would alone; returns
    them, each with its `progress` (its model's best weights restored) and, if it failed, `error`."""
    if len({group_key(member.config) for member in members}) != 1 or group_key(members[0].config) is None:
        raise ValueError("a group's members must share one MLP shape and dataset (group_key)")
    device = splits.train.images.device
    for member in members:
        member.progress = Progress.start(build(member.config, device), member.config, device, member.resume)
    active = [member for member in members if not member.done()]
    stack = Stack(active) if active else None
    while active:
        start = time.perf_counter()
        sums, beta_means = _train_epoch(stack, active, splits.train)
        seconds = (time.perf_counter() - start) / len(active)  # the group's training pass, shared out
        for k, member in enumerate(active):
            _end_epoch(member, splits, sums[k].tolist(), beta_means[k], seconds)
        staying = [k for k, member in enumerate(active) if not member.done()]
        if len(staying) < len(active):
            stack.keep(staying)
            active = [active[k] for k in staying]
    for member in members:
        member.progress.restore_best()
    return members


def _train_epoch(stack: Stack, members: list[Member], split) -> tuple[torch.Tensor, list[float]]:
    """One pass of every member over the training split in its own order: (members, 3) sums of
    loss · n, recon and KL per example, and each member's epoch-mean β."""
    steps = math.ceil(len(split) / members[0].config.batch_size)
    batch = members[0].config.batch_size
    orders = torch.stack([torch.randperm(len(split), generator=m.progress.shuffle) for m in members]).to(
        split.images.device
    )
    first = [m.progress.epoch * steps for m in members]  # the step each member's epoch starts at
    sums = torch.zeros(len(members), 3, device=split.images.device)
    beta_totals = [0.0] * len(members)
    free_bits = torch.tensor([[m.config.free_bits] for m in members], device=split.images.device)
    binarize = members[0].config.binarize == "dynamic"
    for i in range(steps):
        x = split.images[orders[:, i * batch : (i + 1) * batch]]
        if binarize:
            x = torch.stack([torch.bernoulli(x[k], generator=m.progress.noise) for k, m in enumerate(members)])
        betas = [beta_at(first[k] + i, steps, m.config.beta, m.config.warmup_epochs) for k, m in enumerate(members)]
        beta_totals = [total + beta for total, beta in zip(beta_totals, betas)]
        with forward_precision(members[0].config, x.device):
            out = stack(x)
        terms = loss_terms(
            out.in_fp32(),
            x,
            members[0].config.likelihood,
            torch.tensor(betas, device=x.device),
            free_bits,
            stack.log_sigma(),
        )
        stack.step(terms.loss)
        sums += torch.stack(
            [terms.loss.detach() * x.shape[1], terms.recon.detach().sum(-1), terms.kl.detach().sum(-1)], 1
        )
    return sums / len(split), [total / steps for total in beta_totals]


def _end_epoch(member: Member, splits, sums: list[float], beta_mean: float, seconds: float):
    """What `train.fit` does after an epoch, for one member: its metrics, early stopping, callbacks
    and checkpoint. Its epoch's `seconds` are its share of the training pass and its own validation,
    as a run alone times both. Divergence or a callback's exception ends the member, not the group."""
    progress = member.progress
    start = time.perf_counter()
    val = elbo_metrics(progress.model, splits.val, member.config)
    seconds += time.perf_counter() - start
    try:
        metrics = epoch_metrics(progress.epoch + 1, progress.model.variational, sums, beta_mean, val, seconds)
        progress.record(metrics, val[names.LOSS])
        for callback in member.callbacks:
            callback(progress.epoch, metrics)
        if member.checkpoint is not None:
            member.checkpoint(progress.state())
    except Exception as exc:  # TrainingDiverged, a pruned trial's RunStopped, a store that stopped taking writes
        member.error = exc


class Stack:
    """The members' MLP weights stacked along a leading member axis. Layer by layer it computes
    what each member's model computes alone, on the members' batches stacked the same way,
    (members, batch, features). Each member's own parameters are views into the stack, so that its
    own optimiser (`train.make_optimizer`, with its learning rate and its checkpointed state)
    updates its slice in place, and its model always holds its current weights."""

    def __init__(self, members: list[Member]):
        self.members = members
        model = members[0].model
        self.variational = model.variational
        self.layers = _linear_layers(model)
        self.params = {
            name: torch.stack([dict(m.model.named_parameters())[name].detach() for m in members])
            for name, _ in model.named_parameters()
        }
        sigma = model.log_sigma is not None and not model.learns_sigma
        self.fixed_log_sigma = torch.stack([m.model.log_sigma for m in members]) if sigma else None
        self._share()

    def _share(self):
        """Make the stack a leaf that autograd differentiates and each member's parameters views of its slice."""
        for p in self.params.values():
            p.requires_grad_()
        for k, member in enumerate(self.members):
            for name, p in member.model.named_parameters():
                p.data = self.params[name].detach()[k]

    def log_sigma(self) -> torch.Tensor | None:
        """ln σ of each member's Gaussian decoder, (members, 1); None for the Bernoulli likelihood."""
        if "log_sigma" in self.params:
            return self.params["log_sigma"].unsqueeze(-1)
        return None if self.fixed_log_sigma is None else self.fixed_log_sigma.unsqueeze(-1)

    def __call__(self, x: torch.Tensor) -> Output:
        """`AE.forward` of every member: x (members, batch, 784), each member's code drawn with its generator."""
        h = x
        for weight, bias, after in self.layers:
            h = StackedLinear.apply(h, self.params[weight], self.params[bias])
            if after == "relu":
                h = torch.relu(h)
            elif after == "code":
                mu, logvar = h.chunk(2, dim=-1) if self.variational else (h, None)
                h = mu if logvar is None else self._codes(mu, logvar)
        return Output(h, mu, logvar)

    def _codes(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Each member's codes drawn with its own noise generator, as `models.reparameterize` draws them alone."""
        return torch.stack([reparameterize(mu[k], logvar[k], m.progress.noise) for k, m in enumerate(self.members)])

    def step(self, loss: torch.Tensor):
        """Back-propagate the members' summed objectives (each member's gradient is its own
        objective's) and let each member's optimiser take its step."""
        for p in self.params.values():
            p.grad = None
        loss.sum().backward()
        for k, member in enumerate(self.members):
            for name, p in member.model.named_parameters():
                p.grad = self.params[name].grad[k]
            member.progress.optimizer.step()

    def keep(self, index: list[int]):
        """Go on with the members at `index` only (the others keep their weights in their models)."""
        rows = torch.tensor(index, dtype=torch.long, device=next(iter(self.params.values())).device)
        self.members = [self.members[k] for k in index]
        self.params = {name: p.detach()[rows] for name, p in self.params.items()}
        if self.fixed_log_sigma is not None:
            self.fixed_log_sigma = self.fixed_log_sigma[rows]
        self._share()


class StackedLinear(torch.autograd.Function):
    """`nn.Linear` of every member at once: x (members, batch, in), weight (members, out, in) as
    each member's layer holds it, bias (members, out). Autograd's own backward of a batched product
    with the transposed weights computes the weights' gradient transposed and copies it back, a
    quarter of a group's step on the CPU; this one computes it in the weights' layout. Under
    autocast the products run in the forward pass's dtype, as autocast runs a layer's alone."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = (t.to(grad.dtype) for t in ctx.saved_tensors)
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x).to(weight.dtype), grad.sum(1).to(weight.dtype)


def _linear_layers(model: AE) -> list[tuple[str, str, str]]:
    """The MLP's linear layers in the order of its forward pass: (weight's name, bias's name, what
    follows: "relu", "code" (the head: mean and log-variance, then the drawn code) or "" (the logits))."""
    layers = []
    for part in ("encoder", "head", "decoder"):
        linears = [name for name, m in getattr(model, part).named_modules() if isinstance(m, nn.Linear)]
        for i, name in enumerate(linears):
            prefix = ".".join(filter(None, (part, name)))
            last = i == len(linears) - 1
            after = {"encoder": "relu", "head": "code", "decoder": "" if last else "relu"}[part]
            layers.append((f"{prefix}.weight", f"{prefix}.bias", after))
    return layers
