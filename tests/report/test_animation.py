"""Race animations: the frames hold the stored records, the files decode to those frames at
the chosen speed, and bad input is one clear error."""

import doctest

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from divebatch.config import RunConfig
from divebatch.report import animation, animation_encode, target_table
from divebatch.report.animation import AnimationError
from divebatch.report.animation_settings import HOLD_S, SPEEDS
from tests.helpers.races import RACE, stored_race

@pytest.fixture
def race_ids(store):
    return stored_race(store)


def test_doctests():
    assert doctest.testmod(animation).failed == 0


def traces_of(spec: dict, run_id: int) -> list[dict]:
    return [t for t in spec["data"] if t["name"].startswith(f"#{run_id} ")]


def test_frames_match_the_stored_records(store, race_ids):
    race = animation.build_race(animation.load_runs(store, race_ids))
    assert len(race.frames) == 6 and [f.epoch for f in race.frames] == [1, 2, 3, 4, 5, 6]
    assert race.frames[2].title == "classification: 4 runs · epoch 3 of 6"
    last = race.frames[-1]
    assert list(last.charts) == ["diversity", "batch_size", "loss", "val_acc"]
    assert race.notes == ["Learning rate: 0.05 in every epoch of every run shown."]
    for run_id in race_ids:
        records = store.records(run_id)
        accuracy, = traces_of(last.charts["val_acc"], run_id)
        assert accuracy["y"].tolist() == pytest.approx([100 * r["val_acc"] for r in records])
        assert accuracy["x"].tolist() == [r["samples_seen"] for r in records]
        batch = traces_of(last.charts["batch_size"], run_id)[0]  # a step line: + its end
        sizes = [r["batch_size"] for r in records]
        assert batch["y"].tolist() == sizes + sizes[-1:]
        validation = traces_of(last.charts["loss"], run_id)[0]
        assert validation["y"].tolist() == pytest.approx([r["val_loss"] for r in records])
        diversity, = traces_of(last.charts["diversity"], run_id)
        assert diversity["y"].tolist() == pytest.approx([r["diversity"] for r in records])
    # an earlier frame holds the records up to its epoch, the short run stops at its end
    third = race.frames[2].charts["val_acc"]
    assert [len(traces_of(third, i)[0]["y"]) for i in race_ids] == [3, 3, 3, 3]
    assert len(traces_of(race.frames[4].charts["val_acc"], race_ids[3])[0]["y"]) == 4


def test_only_the_last_frame_has_the_verdict_of_the_table(store, race_ids):
    race = animation.build_race(animation.load_runs(store, race_ids))
    runs = [store.get_run(i) for i in race_ids]
    expected = target_table.build(runs, store.records_many(race_ids)).verdict
    assert expected and race.frames[-1].verdict == expected
    assert not any(frame.verdict for frame in race.frames[:-1])


def test_one_run_ends_on_its_final_value(store, race_ids):
    race = animation.build_race(animation.load_runs(store, race_ids[1:2]))
    assert race.frames[-1].verdict == (  # named as the legend names it
        f"#{race_ids[1]} DiveBatch (delta=0.1) [B 16 -> 128]: final accuracy 91.0 %.")


def test_gif_decodes_to_one_frame_per_epoch_and_holds_the_last(store, race_ids, tmp_path):
    race = animation.build_race(animation.load_runs(store, race_ids))
    path = animation.export(race, tmp_path / "race.gif", "gif", "normal")
    with Image.open(path) as gif:
        assert gif.n_frames == len(race.frames) == 6
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))
        assert (first == 255).all(axis=2).mean() > 0.5  # a white page, exactly white
    assert durations == [1000 // SPEEDS["normal"]] * 5 + [1000 * HOLD_S]
    assert path.stat().st_size < 1_000_000


def test_speed_choice_changes_frame_durations(store, race_ids, tmp_path):
    race = animation.build_race(animation.load_runs(store, race_ids[:2]), max_frames=3)
    firsts = {}
    for speed in ("slow", "fast"):
        with Image.open(animation.export(race, tmp_path / f"{speed}.gif", "gif", speed)) as gif:
            firsts[speed] = gif.info["duration"]
    assert firsts == {"slow": 500, "fast": 100}
    assert animation_encode.frame_durations_ms(3, 10, 4.0) == [100, 100, 4000]


def test_mp4_has_the_frames_and_the_held_last_one(store, race_ids, tmp_path):
    race = animation.build_race(animation.load_runs(store, race_ids[:2]), max_frames=4)
    path = animation.export(race, tmp_path / "race.mp4", "mp4", "fast")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == animation_encode.video_frame_count(4, SPEEDS["fast"], HOLD_S) == 3 + 40
    assert seconds == pytest.approx(frames / SPEEDS["fast"], abs=0.11)


def test_long_race_shows_evenly_spaced_epochs_ending_with_the_last(store):
    ids = stored_race(store, (("sgd", 16, [16] * 150, list(np.linspace(0.3, 0.9, 150))),))
    race = animation.build_race(animation.load_runs(store, ids), max_frames=10)
    assert [f.epoch for f in race.frames] == [1, 18, 34, 51, 67, 84, 100, 117, 133, 150]
    assert race.frames[-1].title.endswith("epoch 150 of 150")


def test_bad_input_is_one_line_naming_the_problem(store, race_ids):
    with pytest.raises(AnimationError, match="pick at least one stored run"):
        animation.load_runs(store, [])
    with pytest.raises(AnimationError, match="pick at least one stored run"):
        animation.check_race([])
    with pytest.raises(AnimationError, match="run_id should be the id of a stored run, but "
                                             "got run_id=999"):
        animation.load_runs(store, [race_ids[0], 999])
    other = stored_race(store, RACE[:1], problem="least_squares")
    with pytest.raises(AnimationError) as error:
        animation.build_race(animation.load_runs(store, race_ids[:2] + other))
    assert str(error.value) == (
        f"runs should be of one problem and dataset to race, but got classification (runs "
        f"{race_ids[0]}, {race_ids[1]}) and least_squares (run {other[0]})")
    empty = store.create_run(RunConfig(problem="classification").to_dict(), status="queued")
    with pytest.raises(AnimationError, match=f"no epoch recorded yet in #{empty}"):
        animation.build_race(animation.load_runs(store, [empty]))
    race = animation.build_race(animation.load_runs(store, race_ids[:1]))
    with pytest.raises(AnimationError, match="speed should be one of slow, normal, fast"):
        animation.export(race, "unused.gif", "gif", "warp")
    with pytest.raises(AnimationError, match="format should be one of gif, mp4"):
        animation.export(race, "unused.avi", "avi")


def test_a_two_line_legend_entry_is_drawn_on_two_lines():
    """A run that ended early is named on two lines in the legend (run_labels.legend_label);
    matplotlib drew plotly's '<br>' as it is."""
    from divebatch.report.animation_draw import shown
    assert shown("#4 AdaBatch<br>stopped at epoch 7 of 60") == (
        "#4 AdaBatch\nstopped at epoch 7 of 60")
