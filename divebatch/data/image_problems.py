"""CIFAR-10/100 and Tiny-ImageNet as Problems: uint8 images on the device, augmented and
normalised batch by batch on the device."""

from __future__ import annotations

import torch

from divebatch.data.augment import Augmenter
from divebatch.config import RunConfig
from divebatch.data.problem import Problem
from divebatch.data.images import DatasetError, dataset_status, load_images


def check_available(config: RunConfig) -> None:
    """Raise DatasetError (one line: what to place where) if the dataset files are absent."""
    status = dataset_status(config.data_dir or None).get(config.problem)
    if status is not None and not status["present"]:
        raise DatasetError(status["message"])


def load_image_problem(config: RunConfig, device: torch.device | str) -> Problem:
    arrays = load_images(config.problem, config.data_dir or None)
    x_train, y_train = arrays.x_train, arrays.y_train  # (N, 3, H, W) uint8, (N,)
    if config.n_samples and config.n_samples < len(y_train):
        keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(
            config.seed))[:config.n_samples]
        x_train, y_train = x_train[keep], y_train[keep]
    augmenter = Augmenter.for_dataset(config.problem, crop_flip=config.augment,
                                      seed=config.seed)

    def prepare(raw: torch.Tensor, training: bool) -> torch.Tensor:
        return augmenter(raw) if training else augmenter.normalize(raw)

    return Problem(config.problem, "multiclass", x_train, y_train, arrays.x_val, arrays.y_val,
                   arrays.n_classes, tuple(x_train.shape[1:]), prepare, augmenter.generator)
