"""cvdemo: interactive computer vision for the lecture hall. Run: streamlit run app.py"""

import streamlit as st

from cvdemo import ui
from cvdemo.catalog import PAGES
from cvdemo.serve.client import InferenceServerError

st.set_page_config(page_title="cvdemo", page_icon=":material/visibility:", layout="wide")

home = st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)
pages = [st.Page(p.path, title=p.title, icon=p.icon) for p in PAGES]
navigation = st.navigation({"cvdemo": [home], "Lessons": pages})
ui.sidebar_status()  # the runtime switch must exist before the page reads it
try:
    navigation.run()
except InferenceServerError as exc:  # CVDEMO_INFERENCE_URL set, the server down: a message, not a traceback
    ui.inference_server_error(exc)
ui.sidebar_footer()  # after the page: threads and memory as the page left them
