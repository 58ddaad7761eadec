"""Gradio Blocks demos, one module per capability, each exposing ``build() -> gr.Blocks``.

They call the same ``cvdemo`` functions as the Streamlit pages and get models from
:mod:`cvdemo.cache`, so nothing is implemented or loaded twice.
"""
