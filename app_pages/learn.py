"""Learn: gradient diversity on a problem small enough to see, and how DiveBatch uses it."""

from urllib.parse import urlencode

import streamlit as st

from dashboard.instructor import instructor_mode
from dashboard.learn_tour import learn_tour
from divebatch.report import learn, learn_figures as learn_plots, learn_noise
from divebatch.report.figures import CHART_CONFIG
from divebatch.report.learn_tour import Rule, learn_steps
from divebatch.config import RunConfig
from divebatch.links import config_to_query


START = learn.DEFAULTS
DEFAULTS = {"learn_w1": START["start"][0], "learn_w2": START["start"][1],
            "learn_n": START["n_samples"], "learn_noise": START["noise"],
            "learn_seed": START["seed"], "learn_lr": START["lr"], "learn_steps": START["steps"],
            "learn_delta": 0.5, "learn_b_old": 1, "learn_b_max": 64,
            "learn_last_click": None}
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
if "learn_clicked_w" in st.session_state:  # a click on the contour, applied before the sliders
    st.session_state.learn_w1, st.session_state.learn_w2 = st.session_state.pop("learn_clicked_w")

st.title("Learn: gradient diversity")
st.markdown(
    "Each training sample pulls the weights its own way. **Gradient diversity** measures how "
    "much those pulls disagree; DiveBatch turns it into a batch size. Here: least squares with "
    "two weights and a handful of samples, so every gradient is an arrow you can see.")

# --- 1. per-sample gradients at a point
st.header("1. Per-sample gradients at w")
st.latex(r"\ell_i(w) = \tfrac12 (x_i^\top w - y_i)^2, \qquad "
         r"g_i = \nabla \ell_i(w) = (x_i^\top w - y_i)\, x_i, \qquad "
         r"\Delta(w) = \frac{\sum_i \|g_i\|^2}{\big\|\sum_i g_i\big\|^2} \;\ge\; \frac1n")
controls, chart = st.columns([1, 2.2])
with controls:
    st.slider("w1", *learn_plots.WINDOW, step=0.05, key="learn_w1")
    st.slider("w2", *learn_plots.WINDOW, step=0.05, key="learn_w2")
    st.caption("Or click the contour plot to move w.")
    with st.expander("The data"):
        st.number_input("samples n", min_value=2, max_value=8, step=1, key="learn_n")
        st.number_input("label noise", min_value=0.0, max_value=3.0, step=0.1,
                        key="learn_noise")
        st.number_input("seed", min_value=0, max_value=10_000, step=1, key="learn_seed")
    st.number_input("gradient-descent step size", min_value=0.001, max_value=2.0,
                    step=0.05, format="%.3f", key="learn_lr")
    st.number_input("gradient-descent steps", min_value=1, max_value=500, step=5,
                    key="learn_steps")

try:
    problem = learn.toy_problem(st.session_state.learn_n, st.session_state.learn_noise,
                                st.session_state.learn_seed)
    w = (st.session_state.learn_w1, st.session_state.learn_w2)
    point = learn.summarize(problem, w)
    path = learn.gd_path(problem, w, st.session_state.learn_lr, st.session_state.learn_steps)
    along = learn.diversity_along(problem, path)
except (ValueError, ArithmeticError) as error:
    st.error(f"Cannot compute this setting: {error}")
    st.stop()

with chart:
    event = st.plotly_chart(learn_plots.gradient_field(problem, point, path),
                            key="learn_contour", on_select="rerun", selection_mode="points",
                            width="stretch", config=CHART_CONFIG)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points:
        click = (round(points[0]["x"], 2), round(points[0]["y"], 2))
        if click != st.session_state.learn_last_click:
            st.session_state.learn_last_click = click
            st.session_state.learn_clicked_w = click
            st.rerun()
    st.caption(f"Arrows: each sample's pull −gᵢ (thin; the way a step on that sample alone "
               f"moves w) and the mean pull −Σgᵢ/n (thick red; the full-batch step), all "
               f"scaled by the same factor ({learn_plots.arrow_scale(point):.3g}) so their "
               f"lengths compare. Where the thin arrows agree, Δ is small; where they point "
               f"every which way and the red one is short, Δ is large.")

n = problem.n
metrics = st.columns(5)
metrics[0].metric("Σ‖gᵢ‖²", f"{point.sum_of_sq_norms:.4g}")
metrics[1].metric("‖Σgᵢ‖²", f"{point.sq_norm_of_sum:.4g}")
metrics[2].metric("Δ", f"{point.diversity:.4g}", help=f"at least 1/n = {1 / n:.3g}")
metrics[3].metric("Yin's bound n·Δ", f"{point.yin_bound:.4g}")
metrics[4].metric("mean loss", f"{point.loss:.4g}")
st.markdown(
    f"Δ is at least 1/n = {1 / n:.3g}, reached when every sample pulls the same way. Yin et "
    "al. (2018) show that mini-batch SGD with batches up to about **n·Δ** makes as much "
    "progress per sample as single-sample SGD: the more the gradients disagree, the more of "
    "them can be averaged before the average stops improving.")

# --- 2. closer to the optimum
st.header("2. Closer to the optimum, more diverse")
st.markdown(
    "Follow gradient descent from w (the dotted grey path above). The sum Σgᵢ shrinks towards "
    "zero at the optimum w*, while the individual gᵢ do not (the samples do not all fit "
    "exactly), so Δ and the batch-size bound grow as training converges. That is why "
    "DiveBatch starts small and grows.")
st.plotly_chart(learn_plots.diversity_along_path(along), key="learn_path_chart",
                width="stretch", config=CHART_CONFIG)

# --- 3. the gradient noise scale
def noise_scale_section() -> None:
    st.header("3. n·Δ = 1 + B_simple")
    st.latex(r"G = \frac1n \sum_i g_i, \qquad \Sigma = \frac1n \sum_i (g_i - G)(g_i - G)^\top, "
             r"\qquad B_\text{simple} = \frac{\operatorname{tr}\Sigma}{\|G\|^2}")
    st.latex(r"\operatorname{tr}\Sigma = \frac1n \sum_i \|g_i\|^2 - \|G\|^2 "
             r"\;\Rightarrow\; \frac{\operatorname{tr}\Sigma}{\|G\|^2} "
             r"= \frac{n \sum_i \|g_i\|^2}{\|\sum_i g_i\|^2} - 1 = n\Delta - 1")
    st.markdown(
        "McCandlish et al.'s (2018) gradient noise scale B_simple is the batch size at which "
        "the noise of a mini-batch gradient is about as large as the gradient itself. With the "
        "**1/n** (population) covariance the identity is exact; with the unbiased 1/(n−1) "
        "covariance it is off by the factor n/(n−1). Both sides, computed at w:")
    st.table([
        {"quantity": "n·Δ (library gradient_diversity)", "value": f"{point.yin_bound:.10g}"},
        {"quantity": "1 + tr(Σ)/‖G‖², Σ with 1/n", "value": f"{1 + point.noise_scale:.10g}"},
        {"quantity": "difference", "value": f"{point.yin_bound - 1 - point.noise_scale:.3g}"},
        {"quantity": "1 + tr(Σ)/‖G‖², Σ with 1/(n−1)",
         "value": f"{1 + point.noise_scale_unbiased:.10g}"},
    ])


if instructor_mode():  # a detour for a projector
    st.caption("Instructor mode leaves out section 3 (n·Δ = 1 + B_simple) and the code; "
               "turn it off in the sidebar to see them.")
else:
    noise_scale_section()

# --- 4. DiveBatch's rule
st.header("4. From diversity to a batch size")
st.latex(r"B_\text{new} = \Big\lfloor \min\big(\max(\delta \cdot n \cdot \hat\Delta,\; "
         r"B_\text{old}),\; B_\text{max}\big) \Big\rfloor")
st.markdown(
    "Every R epochs DiveBatch measures Δ̂ over the epoch it just trained and moves the batch "
    "to a fraction δ of Yin's bound, never below the current batch and never above B_max. "
    "n·Δ = 1 + B_simple does not depend on how many samples there are, so read the numbers "
    "as what a large dataset with this gradient noise would get (six samples could not fill "
    "a batch of 40).")
rule = st.columns(3)
rule[0].slider("δ (fraction of Yin's bound)", 0.01, 1.0, step=0.01, key="learn_delta")
rule[1].number_input("B_old", min_value=1, max_value=4096, step=1, key="learn_b_old")
rule[2].number_input("B_max", min_value=1, max_value=65_536, step=1, key="learn_b_max")
delta, b_old, b_max = (st.session_state.learn_delta, st.session_state.learn_b_old,
                       st.session_state.learn_b_max)
rule = None  # the tour's batch steps need a valid rule
if b_max < b_old:
    st.error(f"B_max should be at least B_old ({b_old}), but got B_max={b_max}.")
else:
    b_new = learn.next_batch_size(point.diversity, n, delta, b_old, b_max)
    st.metric("B_new at w", b_new,
              help=f"δ·n·Δ = {delta:g} × {n} × {point.diversity:.4g} = "
                   f"{delta * point.yin_bound:.4g}")
    batches = learn.batch_sizes_along(along["diversity"], n, delta, b_old, b_max)
    rule = Rule(delta, b_old, b_max, batches)
    proposals = [delta * bound for bound in along["yin_bound"]]
    st.plotly_chart(learn_plots.batch_along_path(along["step"], proposals, batches, b_max),
                    key="learn_batch_chart", width="stretch", config=CHART_CONFIG)

    lab_query = config_to_query(RunConfig(problem="least_squares", method="divebatch",
                                          delta=delta, batch_size=b_old, max_batch_size=b_max))
    st.link_button("Try it in the lab", "synthetic?" + urlencode(lab_query),
                   icon=":material/science:",
                   help="Opens the Synthetic lab (new tab) on least squares with this δ, B_old "
                        "as the initial batch size and this B_max.")

# --- 5. the critical batch size
st.header("5. Where a bigger batch stops being free")
scales = learn_noise.noise_scales(problem, w)
st.markdown(
    "Three numbers at w, each from the last: the diversity Δ; the gradient noise scale "
    "**B_simple = n·Δ − 1**, the batch at which a mini-batch gradient's noise is about as "
    "large as the gradient itself; and the **critical batch size B_noise = tr(HΣ) / GᵀHG** of "
    "McCandlish et al. (2018), the same ratio with each direction weighted by the curvature H "
    "of the loss. On this quadratic their model is exact: a step with a batch of B, at its best "
    "step size, makes 1 / (1 + B_noise/B) of the progress of a full-gradient step.")
numbers = st.columns(4)
numbers[0].metric("Δ", f"{scales.diversity:.4g}")
numbers[1].metric("n·Δ", f"{scales.yin_bound:.4g}")
numbers[2].metric("B_simple = n·Δ − 1", f"{scales.b_simple:.4g}")
numbers[3].metric("critical batch B_noise", f"{scales.b_noise:.4g}")
st.plotly_chart(learn_plots.critical_batch_chart(
    learn_noise.batch_trade_off(scales, learn_noise.batch_range(scales)), scales.b_simple,
    scales.b_noise), key="learn_critical_chart", width="stretch",
    config=CHART_CONFIG)
st.caption(
    "For the same progress: well below B_noise, doubling the batch nearly halves the steps "
    "(examples barely grow: the bigger batch is almost free); above it, the steps hardly fall "
    "and the examples double; the two curves cross at B_noise, where both are twice their "
    "minimum. B_simple equals B_noise when the curvature is the same in every "
    "direction; here the inputs are stretched along w1, so the loss is steeper there and the "
    "two differ. DiveBatch moves the batch to δ·n·Δ = δ·(1 + B_simple): a fraction of the "
    "noise scale, which the meter gets for free from the two sums it keeps anyway. Move w to "
    "see all three change together.")

if not instructor_mode():
    with st.expander("Show the library code behind these numbers"):
        for name, source in learn.library_sources().items():
            st.markdown(f"`{name}`")
            st.code(source, language="python")

learn_tour(learn_steps(point, n, along, rule, scales))  # the sidebar's guided tour
