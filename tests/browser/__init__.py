"""Real-browser journeys: the app served by ``streamlit run`` and driven in headless Chromium."""
