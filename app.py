"""cvdemo: interactive computer vision for the lecture hall. Run: streamlit run app.py"""

from contextlib import asynccontextmanager

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

if get_script_run_ctx(suppress_warning=True) is None:
    # `streamlit run app.py` imports this file once to find the server app (st.App); each student's
    # page run executes the `else` branch. The server's start-up hook is the place for a warm start.

    @asynccontextmanager
    async def lifespan(_app):
        from cvdemo import warmup

        if warmup.enabled():  # CVDEMO_WARM_START=1: load models and precompute the default samples
            warmup.start_in_background()
        yield

    app = st.App(__file__, lifespan=lifespan)
else:
    from cvdemo import ui
    from cvdemo.catalog import PAGES
    from cvdemo.serve.client import InferenceServerError

    st.set_page_config(page_title="cvdemo", page_icon=":material/visibility:", layout="wide")

    home = st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)
    pages = [st.Page(p.path, title=p.title, icon=p.icon) for p in PAGES]
    navigation = st.navigation({"cvdemo": [home], "Lessons": pages})
    with ui.page_run():  # one turn per core, in arrival order; "N ahead of you" while waiting
        ui.sidebar_status()  # the runtime switch must exist before the page reads it
        try:
            navigation.run()
        except InferenceServerError as exc:  # CVDEMO_INFERENCE_URL set, the server down: a message, not a traceback
            ui.inference_server_error(exc)
        ui.sidebar_footer()  # after the page: threads and memory as the page left them
