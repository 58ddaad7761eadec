import streamlit as st

st.title("Page 4")
st.write("A trivial page: a title, a line of text, a slider and a button.")
st.slider("Value", 0, 10, 5, key="value")
st.button("Press")
