"""Batch-size schedulers: FixedBatch, AdaBatch and DiveBatch.

They are used like ``torch.optim.lr_scheduler``: built around an optimizer, ``step()`` once at
the end of every epoch, ``state_dict()`` / ``load_state_dict()``. ``step()`` returns the batch
size for the next epoch, so changes land only at epoch boundaries (as with
``DistributedSampler.set_epoch``). When the batch size moves from B_old to B_new, every param
group's *current* ``'lr'`` is multiplied by g(B_new / B_old): 1 (``lr_scaling="none"``, the
paper's headline runs), r (``"linear"``) or sqrt(r) (``"sqrt"``). Because the factor multiplies
the current lr, it composes with PyTorch's chainable LR schedulers (MultiStepLR, ExponentialLR,
CosineAnnealingLR with eta_min=0): the lr is the product of both.

Hot changes between epochs go through ``update(**kw)``; they take effect at the next ``step()``.
Lowering ``max_batch_size`` below the current batch size clamps the batch to the new cap at the
next ``step()`` (with the LR factor of that shrink), whether or not that epoch is a resize epoch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from divebatch.config import LR_SCALINGS

# g(r), the LR factor for a batch-size ratio r = B_new / B_old.
_LR_RULES = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


def _check_int(name: str, value: Any, low: int, low_label: str = "") -> int:
    """`value` as an int >= `low` (bools are not ints), else ValueError naming the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        bound = f"{low_label}={low}" if low_label else str(low)
        raise ValueError(f"{name} should be an int >= {bound}, but got {name}={value!r}")
    return int(value)


def _check_lr_scaling(value: Any) -> str:
    if value not in LR_SCALINGS:
        raise ValueError(f"lr_scaling should be one of {', '.join(map(repr, LR_SCALINGS))}, "
                         f"but got lr_scaling={value!r}")
    return value


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_epoch(epoch: Any) -> int:
    return _check_int("epoch", epoch, 1)


class BatchSizeScheduler:
    """Base class: the batch size of the next epoch, and the LR factor of each change.

    Subclasses name their constructor keywords in ``_config_keys`` (saved in ``state_dict()``),
    the keywords ``update()`` accepts in ``_hot_keys`` and the one holding the first batch size
    in ``_initial_key``; they validate a config in ``_checked()`` and pick the next batch size
    in ``_next_batch_size()``.
    """

    _config_keys: tuple[str, ...] = ()
    _hot_keys: tuple[str, ...] = ()
    _initial_key = "initial_batch_size"
    _progress_keys = ("batch_size", "last_epoch", "last_lr_factor")

    def __init__(self, optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError("optimizer should be a torch.optim.Optimizer, but got optimizer "
                             f"of type {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.__dict__.update(self._checked(config))
        self.batch_size: int = getattr(self, self._initial_key)
        self.last_epoch = 0  # epochs stepped so far
        self.last_lr_factor = 1.0  # LR factor applied by the last step()

    # --- subclass hooks
    def _checked(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config with normalised values; ValueError naming the first bad argument."""
        raise NotImplementedError

    def _next_batch_size(self, epoch: int, diversity: Any) -> int:
        raise NotImplementedError

    def _lr_factor(self, old: int, new: int) -> float:
        return _LR_RULES[self.lr_scaling](new / old)

    # --- public API
    def measures_diversity(self, epoch: int) -> bool:
        """Whether epoch `epoch` (counted from 1) must be measured for the next step()."""
        _check_epoch(epoch)
        return False

    def step(self, diversity: Any = None) -> int:
        """End the current epoch: return the batch size for the next one, rescale the lr."""
        epoch = self.last_epoch + 1
        new = self._next_batch_size(epoch, diversity)
        factor = 1.0 if new == self.batch_size else self._lr_factor(self.batch_size, new)
        if factor != 1.0:
            for group in self.optimizer.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].mul_(factor)  # keep tensor lrs un-aliased, as torch does
                else:
                    group["lr"] = group["lr"] * factor
        self.batch_size = new
        self.last_lr_factor = factor
        self.last_epoch = epoch
        return new

    def get_last_lr(self) -> list[float]:
        """The current lr of each param group."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def update(self, **changes: Any) -> None:
        """Hot-change settings between epochs; they take effect at the next step()."""
        unknown = sorted(set(changes) - set(self._hot_keys))
        if unknown:
            raise ValueError(f"{type(self).__name__}.update() accepts "
                             f"{', '.join(self._hot_keys) or 'nothing'}, but got "
                             f"{', '.join(unknown)}")
        config = {key: getattr(self, key) for key in self._config_keys}
        self.__dict__.update(self._checked(config | changes))

    def state_dict(self) -> dict[str, Any]:
        """Settings and progress as plain python values (the optimizer is not included)."""
        keys = dict.fromkeys(self._config_keys + self._progress_keys)
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore settings and progress, so this scheduler continues like the saved one."""
        expected = set(self._config_keys + self._progress_keys)
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected
        if missing or unexpected:
            raise ValueError(f"state_dict does not fit {type(self).__name__}: missing keys "
                             f"{sorted(missing)}, unexpected keys {sorted(unexpected)}")
        config = self._checked({key: state_dict[key] for key in self._config_keys})
        batch_size = _check_int("batch_size", state_dict["batch_size"], 1)
        last_epoch = _check_int("last_epoch", state_dict["last_epoch"], 0)
        factor = state_dict["last_lr_factor"]
        if not _is_real(factor) or not math.isfinite(factor) or factor <= 0:
            raise ValueError("last_lr_factor should be a finite float > 0, but got "
                             f"last_lr_factor={factor!r}")
        factor = float(factor)
        self.__dict__.update(config)
        self.batch_size, self.last_epoch, self.last_lr_factor = batch_size, last_epoch, factor


class FixedBatch(BatchSizeScheduler):
    """The same batch size every epoch: plain mini-batch SGD as a batch-size scheduler.

    Example::

        >>> import torch
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> sched = FixedBatch(opt, batch_size=128)
        >>> [sched.step() for epoch in range(3)], sched.get_last_lr()
        ([128, 128, 128], [0.1])
    """

    _config_keys = ("batch_size",)
    _initial_key = "batch_size"

    def __init__(self, optimizer: torch.optim.Optimizer, *, batch_size: int) -> None:
        super().__init__(optimizer, {"batch_size": batch_size})

    def _checked(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"batch_size": _check_int("batch_size", config["batch_size"], 1)}

    def _next_batch_size(self, epoch: int, diversity: Any) -> int:
        return self.batch_size


class AdaBatch(BatchSizeScheduler):
    """AdaBatch (Devarakonda et al. 2017): grow the batch by `factor` every `resize_every` epochs.

    At the end of epochs R, 2R, ... (R = `resize_every`): B <- min(B * factor, B_max). When the
    batch grows, the lr is multiplied by g(B_new / B_old) and by `lr_decay` (the paper used
    0.75). Once B reaches B_max the batch stops changing and so does the lr: `lr_decay` applies
    only to resizes that actually grow the batch.

    Args:
        optimizer: the wrapped optimizer; its param groups' lrs are rescaled on each change.
        initial_batch_size: B_0, int >= 1.
        max_batch_size: B_max, int >= initial_batch_size.
        resize_every: R, epochs between resizes, int >= 1.
        factor: growth per resize, int >= 2.
        lr_scaling: "none", "linear" or "sqrt": g(r) = 1, r or sqrt(r).
        lr_decay: extra LR factor per growing resize, float in (0, 1].

    Example::

        >>> import torch
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> sched = AdaBatch(opt, initial_batch_size=32, max_batch_size=128, resize_every=2,
        ...                  lr_scaling="linear", lr_decay=0.75)
        >>> for epoch in range(1, 7):
        ...     # ... train one epoch with DataLoader(data, batch_size=sched.batch_size) ...
        ...     print(epoch, sched.step(), round(sched.get_last_lr()[0], 4))
        1 32 0.1
        2 64 0.15
        3 64 0.15
        4 128 0.225
        5 128 0.225
        6 128 0.225
    """

    _config_keys = ("initial_batch_size", "max_batch_size", "resize_every", "factor",
                    "lr_scaling", "lr_decay")
    _hot_keys = ("max_batch_size", "resize_every")

    def __init__(self, optimizer: torch.optim.Optimizer, *, initial_batch_size: int,
                 max_batch_size: int, resize_every: int, factor: int = 2,
                 lr_scaling: str = "none", lr_decay: float = 1.0) -> None:
        config = {"initial_batch_size": initial_batch_size, "max_batch_size": max_batch_size,
                  "resize_every": resize_every, "factor": factor, "lr_scaling": lr_scaling,
                  "lr_decay": lr_decay}
        super().__init__(optimizer, config)

    def _checked(self, config: dict[str, Any]) -> dict[str, Any]:
        initial = _check_int("initial_batch_size", config["initial_batch_size"], 1)
        checked = {
            "initial_batch_size": initial,
            "max_batch_size": _check_int("max_batch_size", config["max_batch_size"], initial,
                                         "initial_batch_size"),
            "resize_every": _check_int("resize_every", config["resize_every"], 1),
            "factor": _check_int("factor", config["factor"], 2),
            "lr_scaling": _check_lr_scaling(config["lr_scaling"]),
        }
        decay = config["lr_decay"]
        if not _is_real(decay) or not 0 < decay <= 1:
            raise ValueError(f"lr_decay should be a float in (0, 1], but got lr_decay={decay!r}")
        return checked | {"lr_decay": float(decay)}

    def _next_batch_size(self, epoch: int, diversity: Any) -> int:
        if epoch % self.resize_every:
            return min(self.batch_size, self.max_batch_size)  # a lowered cap clamps at once
        return min(self.batch_size * self.factor, self.max_batch_size)

    def _lr_factor(self, old: int, new: int) -> float:
        decay = self.lr_decay if new > old else 1.0
        return super()._lr_factor(old, new) * decay


class DiveBatch(BatchSizeScheduler):
    """DiveBatch (Chen, Wang, Sundaram 2025): batch size from the measured gradient diversity.

    At the end of epochs R, 2R, ... (R = `resize_every`), given the diversity Delta_hat
    measured during that epoch::

        B_new = int(min(max(delta * n_samples * Delta_hat, B_old), B_max))
        B_new = B_max                     if Delta_hat is NaN or infinite

    so the batch never shrinks (the paper's rule). With ``monotone=False`` the floor is
    `min_batch_size` instead of B_old, so the batch may shrink down to it. Every param group's
    lr is multiplied by g(B_new / B_old). On the other epochs nothing changes and `diversity`
    is ignored (it need not be measured: see `measures_diversity`).

    Args:
        optimizer: the wrapped optimizer; its param groups' lrs are rescaled on each change.
        n_samples: n, the number of training samples, int >= 1.
        initial_batch_size: B_0, int >= 1.
        max_batch_size: B_max, int >= initial_batch_size.
        delta: fraction of Yin's bound n * Delta, finite float > 0.
        resize_every: R, epochs between resizes, int >= 1.
        lr_scaling: "none", "linear" or "sqrt": g(r) = 1, r or sqrt(r).
        min_batch_size: floor when ``monotone=False`` (required then, and only then), int in
            [1, initial_batch_size].
        monotone: True for the paper's never-shrinking rule.

    Example (a stand-in diversity; in practice it comes from a ``DiversityMeter``)::

        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = TensorDataset(torch.randn(256, 3), torch.randn(256, 1))
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> sched = DiveBatch(opt, n_samples=len(data), initial_batch_size=16,
        ...                   max_batch_size=128, delta=0.1, resize_every=2, lr_scaling="sqrt")
        >>> measured = {2: 2.5, 4: 10.0}  # epoch -> Delta_hat
        >>> for epoch in range(1, 6):
        ...     for x, y in DataLoader(data, batch_size=sched.batch_size, shuffle=True):
        ...         opt.zero_grad()
        ...         torch.nn.functional.mse_loss(model(x), y).backward()
        ...         opt.step()
        ...     diversity = measured[epoch] if sched.measures_diversity(epoch) else None
        ...     print(epoch, sched.step(diversity), round(sched.get_last_lr()[0], 4))
        1 16 0.1
        2 64 0.2
        3 64 0.2
        4 128 0.2828
        5 128 0.2828
    """

    _config_keys = ("n_samples", "initial_batch_size", "max_batch_size", "delta",
                    "resize_every", "lr_scaling", "min_batch_size", "monotone")
    _hot_keys = ("delta", "max_batch_size", "resize_every", "min_batch_size")

    def __init__(self, optimizer: torch.optim.Optimizer, *, n_samples: int,
                 initial_batch_size: int, max_batch_size: int, delta: float,
                 resize_every: int = 1, lr_scaling: str = "none",
                 min_batch_size: int | None = None, monotone: bool = True) -> None:
        config = {"n_samples": n_samples, "initial_batch_size": initial_batch_size,
                  "max_batch_size": max_batch_size, "delta": delta,
                  "resize_every": resize_every, "lr_scaling": lr_scaling,
                  "min_batch_size": min_batch_size, "monotone": monotone}
        super().__init__(optimizer, config)

    def _checked(self, config: dict[str, Any]) -> dict[str, Any]:
        initial = _check_int("initial_batch_size", config["initial_batch_size"], 1)
        checked = {
            "n_samples": _check_int("n_samples", config["n_samples"], 1),
            "initial_batch_size": initial,
            "max_batch_size": _check_int("max_batch_size", config["max_batch_size"], initial,
                                         "initial_batch_size"),
        }
        delta = config["delta"]
        if not _is_real(delta) or not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"delta should be a finite float > 0, but got delta={delta!r}")
        checked |= {"delta": float(delta),
                    "resize_every": _check_int("resize_every", config["resize_every"], 1),
                    "lr_scaling": _check_lr_scaling(config["lr_scaling"])}
        monotone, floor = config["monotone"], config["min_batch_size"]
        if not isinstance(monotone, bool):
            raise ValueError(f"monotone should be a bool, but got monotone={monotone!r}")
        if monotone and floor is not None:
            raise ValueError("min_batch_size applies only when monotone=False, but got "
                             f"min_batch_size={floor!r} with monotone=True")
        if not monotone:
            if isinstance(floor, bool) or not isinstance(floor, numbers.Integral) \
                    or not 1 <= floor <= initial:
                raise ValueError("min_batch_size should be an int in [1, initial_batch_size="
                                 f"{initial}] when monotone=False, but got "
                                 f"min_batch_size={floor!r}")
            floor = int(floor)
        return checked | {"min_batch_size": floor, "monotone": monotone}

    def measures_diversity(self, epoch: int) -> bool:
        """True when epoch `epoch` (counted from 1) ends at a resize: epoch % resize_every == 0."""
        return _check_epoch(epoch) % self.resize_every == 0

    def _next_batch_size(self, epoch: int, diversity: Any) -> int:
        if not self.measures_diversity(epoch):
            return min(self.batch_size, self.max_batch_size)  # a lowered cap clamps at once
        if diversity is None:
            raise ValueError(f"diversity is required at the end of epoch {epoch} (a resize "
                             f"epoch with resize_every={self.resize_every}), but got "
                             "diversity=None")
        diversity = float(diversity)
        if not math.isfinite(diversity):
            return self.max_batch_size
        floor = self.batch_size if self.monotone else self.min_batch_size
        proposal = self.delta * self.n_samples * diversity  # delta * Yin's bound n * Delta
        return int(min(max(proposal, floor), self.max_batch_size))
