"""cvdemo: the library behind the interactive computer-vision teaching app.

Everything here is plain Python (no Streamlit) except :mod:`cvdemo.ui`.
Heavy libraries (torch, ultralytics, open_clip) are imported inside functions.
"""

import os

# OpenMP worker threads sleep instead of spinning while they wait: on a busy 2-core server
# (Streamlit, Gradio and a model sharing the CPU) spinning made torch several times slower.
# Must be set before torch loads; cvdemo is imported first by the app, the demos and the tests.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
