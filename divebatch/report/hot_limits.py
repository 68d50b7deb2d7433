"""Why a hot change may show no effect yet, in words for the hot-change panel.

A larger delta cannot grow a batch that is already at B_max, a B_max lowered under the batch
caps it from the next epoch, and a change to delta (or a higher B_max) only moves the batch
size at the next resize, at the end of epochs R, 2R, ...

>>> last = {"epoch": 5, "batch_size": 64, "next_batch_size": 64, "max_batch_size": 64,
...         "resize_every": 4}
>>> delta_up = [{"kind": "hot_change", "epoch": 5, "payload": {"delta": 0.5}}]
>>> for line in hot_change_limits({"method": "divebatch"}, [last], delta_up): print(line)
The batch is already at B_max = 64: a larger delta cannot grow it until B_max is raised.
The next resize is at the end of epoch 8, 3 epochs away: delta and B_max act on the batch size
only then.
"""

from __future__ import annotations

from divebatch.config import HOT_FIELDS

ADAPTIVE = ("divebatch", "adabatch")


def hot_values_in_force(config: dict, records: list[dict], events=()) -> dict:
    """The hot parameters a run uses now: its config, then its last epoch's record, then
    every hot change applied since that epoch began (a change made while the run waits
    after an epoch, paused or paced, is in no record yet).

    >>> hot_values_in_force({"delta": 0.1, "resize_every": 2}, [{"epoch": 3, "delta": 0.2}],
    ...     [{"kind": "hot_change", "epoch": 3, "payload": {"resize_every": 5}}])
    {'delta': 0.2, 'resize_every': 5}
    """
    values = {name: config[name] for name in HOT_FIELDS if config.get(name) is not None}
    last = records[-1] if records else {}
    values.update({name: last[name] for name in HOT_FIELDS if last.get(name) is not None})
    since = last.get("epoch", 0)
    for event in events:
        if event.get("kind") == "hot_change" and (event.get("epoch") or 0) >= since:
            values.update((name, value) for name, value in (event.get("payload") or {}).items()
                          if name in HOT_FIELDS)
    return values


def hot_change_limits(config: dict, records: list[dict], events=()) -> list[str]:
    """Sentences (maybe none) on what keeps a hot change from acting on the next epoch,
    with the hot values in force (`events`: the run's events, hot changes among them). Only
    once delta, B_max or R has been changed: the panel explains a change the instructor
    made, never one nobody made (a race reaching B_max in the guided tour)."""
    if config.get("method") not in ADAPTIVE or not records:
        return []
    changed = {name for event in events if event.get("kind") == "hot_change"
               for name in event.get("payload") or {}}
    if not changed & {"delta", "max_batch_size", "resize_every"}:
        return []
    last = {**records[-1], **hot_values_in_force(config, records, events)}
    notes = []
    cap = last.get("max_batch_size") or config.get("max_batch_size")
    batch = last.get("next_batch_size") or last.get("batch_size")
    above = cap is not None and batch is not None and batch > cap
    if above:  # a lowered cap clamps the batch at the next step, resize epoch or not
        notes.append(f"The batch ({batch}) is above the new B_max = {cap}: it is capped at "
                     f"{cap} from the next epoch.")
    elif cap is not None and batch == cap and "delta" in changed:
        grow = "a larger delta" if config["method"] == "divebatch" else "AdaBatch"
        notes.append(f"The batch is already at B_max = {cap}: {grow} cannot grow it until "
                     f"B_max is raised.")
    every = int(last.get("resize_every") or config.get("resize_every") or 1)
    done = int(last["epoch"])
    next_resize = (done // every + 1) * every
    if next_resize - done > 1:
        acting = "delta acts" if above else "delta and B_max act"
        notes.append(f"The next resize is at the end of epoch {next_resize}, "
                     f"{next_resize - done} epochs away: {acting} on the batch size only "
                     f"then.")
    return notes
