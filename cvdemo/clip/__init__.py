"""Zero-shot classification and image search in a joint image-text embedding space (being split into modules)."""

from cvdemo.clip.embedding_engine import *  # noqa: F401,F403
from cvdemo.clip.embedding_engine import _faiss_module  # noqa: F401
