"""Placeholder until this lesson is built: it says what it will do and shows no output."""

import streamlit as st

from cvdemo.catalog import PAGES

info = next(p for p in PAGES if p.path.endswith("segmentation.py"))
st.title(info.title)
st.info(f"This lesson is being built. It will let you: {info.lesson}", icon=":material/construction:")
