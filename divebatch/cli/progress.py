"""A tqdm progress bar over epochs on standard error."""

from __future__ import annotations

import sys

from tqdm import tqdm


class EpochProgress:
    def __init__(self, epochs: int, enabled: bool = True):
        self.bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, disable=not enabled,
                        dynamic_ncols=True)

    def update(self, record) -> None:
        postfix = {"B": record.batch_size, "loss": f"{record.train_loss:.4g}"}
        if record.val_acc is not None:
            postfix["acc"] = f"{record.val_acc:.3f}"
        if record.diversity is not None:
            postfix["div"] = f"{record.diversity:.3g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
