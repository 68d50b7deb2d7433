"""Image lab: digits, CIFAR-10/100 and Tiny-ImageNet, the paper's setting or scaled down."""

import streamlit as st

from dashboard import form, lab
from divebatch.data.images import dataset_status
from divebatch.presets import IMAGE_PROBLEMS
from divebatch.device_options import resolve_device


PREFIX = "img"
IRRELEVANT = ("noise", "dim")  # synthetic problems only

form.init_form(PREFIX, IMAGE_PROBLEMS, default_preset="digits_race")

st.title("Image lab")
st.markdown("Real images: scikit-learn's 8×8 digits work anywhere; CIFAR-10, CIFAR-100 and "
            "Tiny-ImageNet need their files and, at the paper's scale, a GPU.")

device = resolve_device("auto")
status = dataset_status()
with st.container(border=True):
    col_data, col_device = st.columns([3, 1])
    with col_data:
        st.markdown("**Datasets**")
        # one short line per dataset keeps Start in view; where to place one is below
        st.dataframe([{"dataset": name, "present": "yes" if info["present"] else "missing",
                       "details": info["message"] if info["present"]
                       else "not found: see 'How to add' below"}
                      for name, info in status.items()], hide_index=True, width="stretch")
    with col_device:
        st.markdown("**Device**")
        st.metric("auto picks", str(device).upper(),
                  help="device=auto uses CUDA, then Apple MPS, then the CPU.")
        if device.type == "cpu":
            st.caption("No GPU here: digits and the scaled-down presets are the sensible "
                       "choices; the paper's 200-epoch ResNet-18 runs take days on a CPU.")
    missing = [name for name, info in status.items() if not info["present"]]
    if missing:
        with st.expander(f"How to add {', '.join(missing)}"):
            st.markdown(
                "Nothing is downloaded behind your back. On a machine with internet access "
                "one command downloads, verifies the MD5 checksum and extracts into `data/` "
                "(or `$DIVEBATCH_DATA`):")
            st.code("\n".join(f"python -m divebatch download {name}" for name in missing),
                    language="bash")
            st.markdown("Offline: fetch the archive elsewhere and extract it into the data "
                        "folder; `data/README.md` lists the archives, checksums and the "
                        "folder layout each dataset needs:")
            st.markdown("\n".join(f"- {status[name]['message']}" for name in missing))

lab.form_and_live_panel(PREFIX, IMAGE_PROBLEMS, hidden=IRRELEVANT)
