"""Links and instructor mode through Streamlit's AppTest: a link sets up the lab (and names
what it cannot), instructor mode keeps to the preset, the three knobs and big buttons, and
both stay in the page's address."""

import pytest

from divebatch.links import config_to_query
from divebatch.presets import PRESETS
from divebatch.runs import control_requests
from tests.helpers.apptest import open_app, set_numbers, texts

pytestmark = pytest.mark.usefixtures("no_workers_left_behind")


def test_a_link_reproduces_a_setup():
    at = open_app("app_pages/synthetic.py", query={"problem": "sine", "delta": "0.25",
                                               "seed": "7", "method": "adabatch"})
    assert at.selectbox(key="syn_problem").value == "sine"
    assert at.number_input(key="syn_delta").value == 0.25
    assert at.number_input(key="syn_seed").value == 7
    assert at.selectbox(key="syn_method").value == "adabatch"
    assert "Settings loaded from the link" in texts(at.success)
    at.number_input(key="syn_seed").set_value(8).run()
    assert at.query_params["seed"] in ("8", ["8"])


def test_a_bad_value_in_a_link_is_named_by_its_label_and_the_rest_kept():
    at = open_app("app_pages/synthetic.py", query={"delta": "0.25", "batch_size": "ten",
                                               "max_batch_size": "0"})
    error = texts(at.error)
    assert "**initial batch size B0** should be an int, but got 'ten'" in error
    assert "**max batch size B_max** should be" in error and "batch_size=" not in error
    assert at.number_input(key="syn_delta").value == 0.25  # the good parameter applies


def test_a_link_field_that_conflicts_with_a_default_is_refused_alone():
    at = open_app("app_pages/synthetic.py", query={"delta": "0.25", "batch_size": "4096"})
    assert "**initial batch size B0** conflicts with a default" in texts(at.error)
    assert at.number_input(key="syn_delta").value == 0.25  # the rest of the link applies


def test_unknown_runs_in_a_link_are_named(store):
    known = store.create_run({"problem": "sine", "method": "sgd"}, status="completed")
    other = store.create_run({"problem": "sine", "method": "divebatch"}, status="completed")
    at = open_app("app_pages/runs.py", query={"runs": f"{known},999,abc,{other}"})
    assert at.multiselect(key="runs_shown").value == [known, other]
    assert "not shown here: #999, 'abc'" in texts(at.warning)
    # runs compared open on training time, the clock of their verdict
    assert at.selectbox(key="runs_x_axis").value == "train_time"
    # the Runs page has no Start: its empty picker does not offer one
    assert "Start" not in at.multiselect(key="runs_shown").proto.placeholder


def test_instructor_mode_stays_in_every_pages_address():
    """A reload (F5) opens a new session on the address: every page must keep the mode
    there, not only the labs."""
    at = open_app()
    at.toggle(key="instructor").set_value(True).run()
    assert at.query_params.get("instructor") in ("1", ["1"])
    for page in ("app_pages/learn.py", "app_pages/runs.py", "app_pages/sweep.py",
                 "app_pages/reproduce.py", "app_pages/home.py"):
        at.query_params.clear()  # a page switch in the browser drops the parameters
        at.switch_page(page).run()
        assert at.query_params.get("instructor") in ("1", ["1"]), page
    at.toggle(key="instructor").set_value(False).run()
    assert "instructor" not in at.query_params


def test_the_pace_is_in_the_address_and_a_link_sets_it():
    at = open_app("app_pages/synthetic.py")
    assert "pace" not in at.query_params  # real time, the default, is left out
    at.button_group(key="syn_start_pace").set_value("classroom").run()
    assert at.query_params.get("pace") in ("classroom", ["classroom"])
    at = open_app("app_pages/synthetic.py", query={"pace": "step", "delta": "0.25"})
    assert at.button_group(key="syn_start_pace").value == "step"
    assert at.number_input(key="syn_delta").value == 0.25
    assert not at.error and not at.warning
    at = open_app("app_pages/synthetic.py", query={"pace": "fast"})
    assert "Pace in this link should be one of real, classroom, step, but got 'fast'" in (
        texts(at.error))
    assert at.button_group(key="syn_start_pace").value == "real"


def test_sgd_large_link_selects_the_large_batch_variant():
    at = open_app("app_pages/synthetic.py", query={"method": "sgd", "batch_size": "1024"})
    assert at.selectbox(key="syn_method").value == "sgd_large"


def test_instructor_flag_hides_advanced_controls():
    at = open_app("app_pages/synthetic.py", query={"instructor": "1"})
    assert at.toggle(key="instructor").value is True
    assert not [e for e in at.expander if e.label == "Advanced settings"]
    keys = {w.key for w in at.number_input}
    assert keys == {"syn_delta", "syn_max_batch_size", "syn_resize_every"}
    assert at.query_params.get("instructor") in ("1", ["1"])
    assert [e.label for e in at.expander] == ["Setup"]  # no "Show the code" either
    set_numbers(at, "syn", delta=0.2)  # the preset's other settings stay
    at.button(key="syn_start").click().run()
    assert at.expander[0].label == ("Setup: Convex: diversity rises as the loss falls "
                                    "(open to change)")  # folded: a new label, drawn closed
    assert any("scrollIntoView" in str(e.proto) for e in at.get("html"))


def scroll_scripts(at) -> list[str]:
    return [e.proto.body for e in at.get("html") if "scrollIntoView" in e.proto.body]


def test_each_start_asks_once_for_the_scroll_to_the_charts(store):
    """Drawn on the Start's page update only: a later page run (the first point's, a status
    change's) must not scroll a page whose setup the instructor has opened since; each Start
    is a request of its own, which the browser runs once."""
    at = open_app("app_pages/synthetic.py", query={"instructor": "1"})
    at.button(key="syn_start").click().run()
    [first] = scroll_scripts(at)
    at.run()
    assert scroll_scripts(at) == []
    at.button(key="syn_race").click().run()
    [second] = scroll_scripts(at)
    assert second != first
    at.run()
    assert scroll_scripts(at) == []
    for run in store.list_runs():
        control_requests.request_stop(store, run["id"])


def test_a_reload_of_a_presets_setup_names_that_preset_again():
    """A reload opens a new session on the address bar's link: the picker shows the preset
    the link's setup is, not the page's first one beside "the form differs"."""
    query = config_to_query(PRESETS["classification_race"].config())
    at = open_app("app_pages/synthetic.py", query=query)
    assert at.selectbox(key="syn_preset").value == "classification_race"
    assert "The form differs from this preset" not in texts(at.caption)


def test_picking_a_preset_loads_it_and_the_folded_header_names_what_runs(store):
    """Instructor mode hides the problem field: what Race runs must be what the header
    says, so picking a preset loads it at once (no separate Load button to forget)."""
    at = open_app("app_pages/synthetic.py", query={"instructor": "1"})
    at.selectbox(key="syn_preset").set_value("classification_race").run()
    assert at.session_state["syn_problem"] == "classification"
    assert at.number_input(key="syn_delta").value == 0.02
    at.number_input(key="syn_max_batch_size").set_value(256).run()  # a hot knob: still it
    at.button(key="syn_start").click().run()
    assert at.expander[0].label == "Setup: Race on a 4-class problem (open to change)"
    [run] = store.list_runs()
    assert run["config"]["problem"] == "classification"
    assert run["config"]["max_batch_size"] == 256
    control_requests.request_stop(store, run["id"])


def test_the_instructors_setup_stays_open_when_a_preset_is_picked_in_it(store):
    """Its label names the preset: picking one drew a new expander, folded at once."""
    at = open_app("app_pages/synthetic.py", query={"instructor": "1"})
    at.button(key="syn_start").click().run()
    assert not at.expander[0].proto.expanded  # Start folds it
    [run] = store.list_runs()
    control_requests.request_stop(store, run["id"])
    at.selectbox(key="syn_preset").set_value("classification_race").run()
    assert at.expander[0].label == "Setup: Race on a 4-class problem (open to change)"
    assert at.expander[0].proto.expanded
    assert not at.warning and not at.exception


def test_a_form_set_by_a_link_says_it_is_not_the_preset():
    at = open_app("app_pages/synthetic.py", query={"problem": "sine", "method": "adabatch"})
    assert "The form differs from this preset" in texts(at.caption)
    assert "sine, AdaBatch" in texts(at.caption)
    at.button(key="syn_load_preset").click().run()  # Reset: the preset again
    assert at.session_state["syn_problem"] == "least_squares"
    assert "The form differs" not in texts(at.caption)


def test_instructor_mode_simplifies_home_and_learn():
    at = open_app(query={"instructor": "1"})
    assert [link.proto.label for link in at.get("page_link")] == ["**Learn**",
                                                                   "**Synthetic lab**"]
    assert len(at.columns) == 2  # the two cards fill the row (a third column stood empty)
    assert not [h for h in at.subheader if h.value == "How it works"]
    at.switch_page("app_pages/learn.py").run()
    assert not [h for h in at.header if h.value.startswith("3.")]
    assert not [e for e in at.expander if e.label.startswith("Show the library code")]
