"""A run's schedules from its config: the batch-size scheduler (FixedBatch, AdaBatch or
DiveBatch) and the chainable per-epoch base LR schedule."""

from __future__ import annotations

import torch

from divebatch.config import RunConfig
from divebatch.schedulers import AdaBatch, DiveBatch, FixedBatch


def make_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, n_train: int):
    if config.method == "sgd":
        return FixedBatch(optimizer, batch_size=config.batch_size)
    if config.method == "adabatch":
        return AdaBatch(optimizer, initial_batch_size=config.batch_size,
                        max_batch_size=config.max_batch_size,
                        resize_every=config.resize_every, factor=config.adabatch_factor,
                        lr_scaling=config.lr_scaling, lr_decay=config.adabatch_lr_decay)
    return DiveBatch(optimizer, n_samples=n_train, initial_batch_size=config.batch_size,
                     max_batch_size=config.max_batch_size, delta=config.delta,
                     resize_every=config.resize_every, lr_scaling=config.lr_scaling,
                     min_batch_size=config.min_batch_size or None,
                     monotone=config.min_batch_size == 0)


def make_lr_schedule(config: RunConfig, optimizer: torch.optim.Optimizer):
    """Chainable per-epoch base schedule (multiplies the current LR, so batch-size LR
    factors and hot multipliers compose with it); None for constant."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        milestones = sorted({max(1, config.epochs // 2), max(1, (3 * config.epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    return None
