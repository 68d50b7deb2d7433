"""The run-config form of a lab page: one widget per RunConfig field (help text and range from
the field's metadata), presets, the whole setup mirrored in the URL, Start and Race buttons.

Widget values live in st.session_state under "<prefix>_<field>" ("<prefix>_method" holds the
method *variant*: divebatch, adabatch, sgd_small, sgd_large) and persist across page switches.
"""

from __future__ import annotations

import streamlit as st

from divebatch.runs import capacity, queue, warm_pool
from divebatch.training.runnable import check_runnable
from divebatch.config import ALLOWED_MODELS, HOT_FIELDS, RunConfig, config_fields
from divebatch.links import config_to_query, read_query
from divebatch.report.code import decision_sources
from divebatch.presets import (PRESETS, VARIANTS, method_of_variant, presets_for, race_configs,
                               variant_of, variant_uses, with_variant)

from . import roles
from .fields import field_value, field_widget, label_of
from .store import open_store
from .first_point import await_first_points
from .instructor import FIELDS as INSTRUCTOR_FIELDS
from .instructor import ask_for_charts, instructor_mode
from .play import pace_from_link, pace_in_link, pace_picker, pace_seconds, start_paced

# Shown in the main grid (in this order); every other field goes under "Advanced".
MAIN_FIELDS = ("problem", "model", "method", "epochs", "batch_size", "max_batch_size", "delta",
               "resize_every", "lr", "lr_scaling", "schedule", "momentum", "weight_decay",
               "seed", "device", "name")
CHOSEN_ELSEWHERE = ("pace_s",)  # the Pace control beside Start sets it
HOT_NOTE = ("(hot) marks the hot parameters: delta, max batch size, resize interval and the LR "
            "multiplier change while a run is going (the panel above the charts). "
            "Everything else needs a new run.")


NOT_CONFIG = ("instructor", "runs", "pace")  # link parameters that are not RunConfig fields


def key(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


# --- state <-> RunConfig

def load_into_state(prefix: str, config: RunConfig) -> None:
    """Put every field of `config` into the form's widget state."""
    for f in config_fields():
        value = getattr(config, f.name)
        st.session_state[key(prefix, f.name)] = float(value) if f.type == "float" else value
    st.session_state[key(prefix, "method")] = variant_of(config)


def config_from_state(prefix: str) -> RunConfig:
    """The RunConfig the form describes (not validated)."""
    values = {f.name: field_value(f.name, st.session_state[key(prefix, f.name)])
              for f in config_fields()}
    variant = values["method"]
    values["method"] = method_of_variant(variant)
    return with_variant(RunConfig(**values), variant)


def init_form(prefix: str, problems: tuple[str, ...], default_preset: str) -> None:
    """First visit in this session: the setup from the URL if it has one (a bad parameter
    is named by its label and left at its default; the others apply), else the default
    preset. Only the page a session opens on reads the URL: later pages may still see the
    previous page's parameters there."""
    if st.session_state.get(key(prefix, "ready")):
        return
    st.session_state[key(prefix, "ready")] = True
    config = PRESETS[default_preset].config()
    query = {} if st.session_state.get("url_read") else st.query_params.to_dict()
    st.session_state.url_read = True
    pace_from_link(prefix, query)
    if set(query) - set(NOT_CONFIG):
        config = _config_from_link(prefix, query, problems, config)
        matching = [p.key for p in presets_for(problems) if _is_preset(config, p.key)]
        if matching:  # a reload, or a preset's link: the picker names it again
            st.session_state[key(prefix, "preset")] = matching[0]
    load_into_state(prefix, config)


def _config_from_link(prefix: str, query: dict, problems: tuple[str, ...],
                      preset: RunConfig) -> RunConfig:
    """The link's setup, keeping its good parameters; the notice names the refused ones."""
    try:
        config, refused = read_query(query, ignore=NOT_CONFIG, name_of=label_of)
    except ValueError as error:  # a conflict between fields the link did not set
        st.session_state[key(prefix, "notice")] = (
            "error", f"The settings in this link were refused:\n\n{_bullets(error)}")
        return preset
    if config.problem not in problems:
        refused["problem"] = (f"should be one of {', '.join(problems)} on this page, but got "
                              f"{config.problem!r}")
        config = config.replace(problem=preset.problem)
    if not refused:
        st.session_state[key(prefix, "notice")] = ("success", "Settings loaded from the link.")
        return config
    reasons = "\n".join(f"- **{label_of(name)}** {why}" for name, why in refused.items())
    if not set(query) - set(NOT_CONFIG) - set(refused):  # nothing applied: the page's default
        st.session_state[key(prefix, "notice")] = (
            "error", f"The settings in this link were refused, so none was applied:\n\n{reasons}")
        return preset
    st.session_state[key(prefix, "notice")] = (
        "error", "Some settings in this link were refused and keep their default values; "
                 f"the others were applied:\n\n{reasons}")
    return config


def _bullets(error: Exception) -> str:
    return "\n".join(f"- {line}" for line in str(error).splitlines())


def sync_url(prefix: str, config: RunConfig) -> None:
    """Mirror a valid setup in the address bar (fields that differ from the defaults, and
    the pace of new runs unless it is real time)."""
    wanted = {**config_to_query(config), **pace_in_link(prefix)}
    if instructor_mode():
        wanted["instructor"] = "1"
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


# --- widgets

def _render_field(prefix: str, name: str, problems: tuple[str, ...]) -> None:
    variant = st.session_state[key(prefix, "method")]
    if name == "problem":
        field_widget(name, key(prefix, name), options=problems)
    elif name == "model":
        models = ("auto",) + ALLOWED_MODELS[st.session_state[key(prefix, "problem")]]
        if st.session_state[key(prefix, "model")] not in models:
            st.session_state[key(prefix, "model")] = "auto"
        field_widget(name, key(prefix, name), options=models)
    elif name == "method":
        field_widget(name, key(prefix, name), options=tuple(VARIANTS),
                     format_func=VARIANTS.get)
    else:
        field_widget(name, key(prefix, name), disabled=not variant_uses(variant, name))


def _grid(prefix: str, names: list[str], problems: tuple[str, ...], columns: int = 4) -> None:
    cols = st.columns(columns)
    for index, name in enumerate(names):
        with cols[index % columns]:
            _render_field(prefix, name, problems)


def preset_picker(prefix: str, problems: tuple[str, ...]) -> None:
    """Pick one of the presets for these problems: picking loads it into the form (what
    Start and Race run is always what the form shows); Reset loads it again after edits."""
    choices = [p.key for p in presets_for(problems)]
    picked = st.session_state.setdefault(key(prefix, "preset"), choices[0])
    col_pick, col_load = st.columns([4, 1], vertical_alignment="bottom")
    with col_pick:
        st.selectbox("Preset", choices, key=key(prefix, "preset"),
                     format_func=lambda k: PRESETS[k].title, persist_state="session",
                     on_change=load_preset, args=(prefix,),
                     help="A ready-made setup with something to look at: picking one loads "
                          "its settings into the form.")
    with col_load:
        st.button("Reset", key=key(prefix, "load_preset"), width="stretch",
                  on_click=load_preset, args=(prefix,),
                  help="Put the preset's settings back into the form.")
    st.caption(PRESETS[picked].lesson if form_is_preset(prefix) else
               f"The form differs from this preset (set by a link or by hand): "
               f"{describe_setup(prefix)} will run. Reset loads the preset.")


def load_preset(prefix: str) -> None:
    load_into_state(prefix, PRESETS[st.session_state[key(prefix, "preset")]].config())
    st.session_state[key(prefix, "setup_open")] = True  # picked in it: the setup was open


def form_is_preset(prefix: str) -> bool:
    """Whether the form holds the picked preset, but for the hot parameters (changed
    freely during a lesson), the run name and the pace."""
    return _is_preset(config_from_state(prefix), st.session_state.get(key(prefix, "preset")))


def _is_preset(config: RunConfig, preset_key: str | None) -> bool:
    preset = PRESETS.get(preset_key)
    if preset is None:
        return False
    free = set(HOT_FIELDS) | {"name", "pace_s"}
    form, wanted = config.to_dict(), preset.config().to_dict()
    return all(form[name] == wanted[name] for name in wanted if name not in free)


def describe_setup(prefix: str) -> str:
    """What Start runs, in a few words: the preset's title when the form holds it, else
    the problem and method ("sine, AdaBatch")."""
    if form_is_preset(prefix):
        return PRESETS[st.session_state[key(prefix, "preset")]].title
    variant = st.session_state[key(prefix, "method")]
    return f"{st.session_state[key(prefix, 'problem')]}, {VARIANTS[variant]}"


def config_form(prefix: str, problems: tuple[str, ...], hidden: tuple[str, ...] = ()
                ) -> RunConfig | None:
    """Render the form; returns the setup if it is valid, else shows why and returns None."""
    notice = st.session_state.pop(key(prefix, "notice"), None)
    if notice:
        getattr(st, notice[0])(notice[1])
    main = [n for n in MAIN_FIELDS if n not in hidden]
    advanced = [f.name for f in config_fields() if f.name not in MAIN_FIELDS
                and f.name not in hidden and f.name not in CHOSEN_ELSEWHERE]
    if instructor_mode():
        main, advanced = list(INSTRUCTOR_FIELDS), []
    _grid(prefix, main, problems, columns=len(main) if instructor_mode() else 4)
    if advanced:
        with st.expander("Advanced settings"):
            _grid(prefix, advanced, problems)
        st.caption(HOT_NOTE)
    config = config_from_state(prefix)
    try:
        config.validate(name_of=label_of)
    except ValueError as error:
        st.error(f"These settings are not valid, so no run can start:\n\n{_bullets(error)}")
        return None
    sync_url(prefix, config)
    return config


def runnable_problem(config: RunConfig) -> str | None:
    """Why this setup cannot run on this machine (device, dataset), in one line, or None."""
    try:
        check_runnable(config)
    except ValueError as error:
        return str(error)
    return None


# --- starting runs

def start_buttons(prefix: str, config: RunConfig | None, blocked: str | None,
                  with_pace: bool = True) -> None:
    """Start one run, or race the four methods; new runs go onto this page's charts.
    Instructor mode: two big buttons side by side (the pace is then in the setup)."""
    disabled = config is None or blocked is not None
    if with_pace:
        pace_picker(prefix)
    if instructor_mode():
        col_start, col_race = st.columns(2, vertical_alignment="center")
        col_note = None
    else:
        col_start, col_race, col_note = st.columns([1, 1, 3], vertical_alignment="center")
    col_start.button("Start run", key=key(prefix, "start"), type="primary",
                     disabled=disabled, width="stretch",
                     on_click=_start, args=(prefix, False))
    col_race.button("Race the 4 methods", key=key(prefix, "race"), disabled=disabled,
                    width="stretch", on_click=_start, args=(prefix, True),
                    help="DiveBatch, SGD at the small batch, SGD at the large batch (B_max) "
                         "and AdaBatch on the same problem and seed, overlaid, with the "
                         "paper's time-to-target table.")
    if col_note is not None:
        col_note.caption("Runs train in background worker processes: they keep going if "
                         "you reload, close the tab or restart the dashboard.")
    if blocked:
        st.error(f"This setup cannot run here: {blocked}")
    if config is None:  # the form's error box, under the form, names the bad fields
        st.warning("Start and Race are off until the settings named in the red box under the "
                   "form are fixed.", icon=":material/block:")
    note = st.session_state.pop(key(prefix, "start_note"), None)
    if note:
        st.info(note)
    error = st.session_state.pop(key(prefix, "start_error"), None)
    if error:
        st.error(error)


def _start(prefix: str, race: bool) -> None:
    if not roles.require_instructor("race" if race else "start"):
        return
    pace = st.session_state.get(key(prefix, "start_pace")) or "real"
    config = config_from_state(prefix)
    config = config.replace(pace_s=pace_seconds(pace, config.epochs))
    blocked = runnable_problem(config)
    if blocked:
        st.session_state[key(prefix, "start_error")] = f"Cannot start: {blocked}"
        return
    store = open_store()
    try:
        if race:
            runs = [variant for _, variant in race_configs(config)]
            ids = queue.submit_race(store, runs)
        else:
            ids = [queue.submit(store, config, name=config.name)]
    except ValueError as error:
        st.session_state[key(prefix, "start_error")] = f"Cannot start:\n\n{_bullets(error)}"
        return
    start_paced(store, ids, pace)
    st.session_state[key(prefix, "setup_open")] = False  # instructor mode's setup folds
    await_first_points(store, ids)  # so that this click's page update brings the charts
    if race:
        st.session_state[key(prefix, "start_note")] = race_note(store, runs)
    ask_for_charts(prefix)  # the charts in view, whatever the mode
    if race:  # the race's verdict is about training time: show the axis it is about
        st.session_state[key(prefix, "x_axis")] = "train_time"
    shown = [] if race else _kept_on_start(store, st.session_state.get(key(prefix, "shown"), []))
    st.session_state[key(prefix, "shown")] = [*shown, *ids]


def _kept_on_start(store, shown: list[int]) -> list[int]:
    """The runs a Start keeps on the charts beside its new run: lone runs, to compare a "what
    if", but not a race's (the new run joined its verdict and table as a fifth runner)."""
    runs = [store.get_run(run_id) for run_id in shown]
    if any(run and run["group"].startswith(warm_pool.RACE_GROUP_PREFIX) for run in runs):
        return []
    return shown


def race_note(store, runs: list[RunConfig]) -> str | None:
    """Say plainly how a race's runs share this machine, and about how long it takes."""
    if warm_pool.race_interleaves(runs):
        return (f"The {len(runs)} runs take turns in one worker, an epoch each, so all curves "
                f"grow together; each run's training time counts only its own epochs.")
    slots = capacity.max_workers()
    if slots >= len(runs):
        return None
    typical = queue.typical_run_seconds(store, runs[0])
    rounds = -(-len(runs) // slots)  # ceil
    about = f", about {typical * rounds:.0f} s in all" if typical else ""
    return (f"This machine trains {slots} run(s) at a time, so the {len(runs)} runs go one "
            f"after another{about}: each curve appears when its run starts.")


def show_the_code(prefix: str) -> None:
    """The library functions that make the batch-size decision for the chosen method."""
    variant = st.session_state[key(prefix, "method")]
    with st.expander("Show the code: how this method picks the next batch size"):
        for where, source in decision_sources(method_of_variant(variant)).items():
            st.caption(where)
            st.code(source, language="python")
