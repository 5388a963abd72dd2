"""The pages: one Streamlit script each, registered by app.py with st.navigation."""
