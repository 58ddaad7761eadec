"""Home: one card per lesson."""

import streamlit as st

from cvdemo import ui
from cvdemo.catalog import PAGES

st.title("cvdemo: see what the lectures teach")
st.markdown(
    "Real pretrained models running on this computer's CPU. Pick a lesson; every number on "
    "every page is computed live, nothing is pre-recorded."
)
columns = st.columns(3)
for i, page in enumerate(PAGES):
    with columns[i % 3].container(border=True):
        st.markdown(f"#### {page.icon} {page.title}")
        st.write(page.lesson)
        ui.page_link(page.path, label=f"Open {page.title}", icon=":material/arrow_forward:")
st.caption(
    "Teaching tip: every page works offline with the models listed in the sidebar; "
    "pages say exactly which file is missing when a model is not on this machine. "
    "The sidebar's **Inference runtime** switch runs the same networks in plain PyTorch or exported "
    "to OpenVINO / ONNX Runtime: the latency badges on the pages show the difference."
)
