"""cvdemo: the library behind the interactive computer-vision teaching app.

Everything here is plain Python (no Streamlit) except :mod:`cvdemo.ui`.
Heavy libraries (torch, ultralytics, open_clip) are imported inside functions.
"""

__version__ = "0.1.0"
