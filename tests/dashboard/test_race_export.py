"""The race-animation downloads on the pages that show runs: buttons for a race, st.error for
runs that make none, and the button's data is the GIF of the stored runs."""

import io
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import race_export
from divebatch.report.figures import ChartOptions
from tests.helpers.races import RACE, stored_race

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def runs_page(ids: list[int]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/runs.py").run()
    at.multiselect(key="runs_shown").set_value(ids).run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [element.value for element in at.error]


def test_a_race_gets_a_speed_choice_and_both_buttons(store):
    ids = stored_race(store)
    at = runs_page(ids)
    assert at.button_group(key="runs_animation_speed").value == "normal"
    for fmt in ("gif", "mp4"):
        assert at.download_button(key=f"runs_animation_{fmt}") is not None
    assert not errors(at)
    assert [e.label for e in at.expander if e.label.startswith("Animation")] == [
        "Animation of this race (GIF, MP4) for slides"]


def test_one_run_gets_an_animation_of_this_run(store):
    at = runs_page(stored_race(store, RACE[:1]))
    assert [e.label for e in at.expander if e.label.startswith("Animation")] == [
        "Animation of this run (GIF, MP4) for slides"]


def test_runs_of_different_problems_get_one_error_and_no_buttons(store):
    ids = stored_race(store, RACE[:2]) + stored_race(store, RACE[:1], problem="least_squares")
    at = runs_page(ids)
    assert errors(at) == [f"No animation: runs should be of one problem and dataset to race, "
                          f"but got classification (runs {ids[0]}, {ids[1]}) and "
                          f"least_squares (run {ids[2]})."]
    assert not [b for b in at.get("download_button") if "animation" in (b.key or "")]


def test_no_runs_and_unknown_runs_are_one_error_each():
    def panel(run_ids):
        from dashboard import race_export
        race_export.download_panel("x", run_ids)
    for run_ids, message in (([], "runs: pick at least one stored run to animate"),
                             ([999], "run_id should be the id of a stored run, but got "
                                     "run_id=999")):
        at = AppTest.from_function(panel, args=(run_ids,), default_timeout=30).run()
        assert not at.exception, at.exception
        assert errors(at) == [f"No animation: {message}."]


def test_the_button_data_is_the_gif_of_the_stored_race(store):
    ids = stored_race(store)
    make = race_export.file_maker(str(store.path), ids, ChartOptions(x_axis="epoch"), "gif", "fast")
    with Image.open(io.BytesIO(make())) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 100


def test_a_run_without_epochs_gets_a_note_not_an_error(store):
    from divebatch.config import RunConfig
    run_id = store.create_run(RunConfig(problem="classification").to_dict(), status="stopped")
    at = runs_page([run_id])  # (stopped: no worker starts)
    assert not errors(at)
    assert "once an epoch is recorded" in " ".join(info.value for info in at.info)
