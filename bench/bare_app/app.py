"""A bare Streamlit app (st.navigation, 6 trivial pages): the framework's own floor for bench_classroom.py."""

import streamlit as st

st.set_page_config(page_title="bare", layout="wide")
pages = [st.Page(f"bare_pages/page{i}.py", title=f"Page {i}", url_path=f"page{i}", default=i == 1) for i in range(1, 7)]
st.navigation(pages).run()
