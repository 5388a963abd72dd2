"""Text from files and users shown inside Streamlit's Markdown: ``plain`` makes it read as typed.

``st.error``, ``st.warning`` and friends render Markdown, so a column called ``[click](http://...)``
would become a link, ``**x**`` bold, ``:red[...]`` coloured and ``$...$`` a formula. ``plain``
puts a backslash before every character Markdown (and Streamlit's directives) give a meaning to.
Not a page: the app registers its pages by name.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~:$])")


def plain(text: object) -> str:
    """Return ``text`` escaped so Markdown shows it as it is."""
    return _SPECIAL.sub(r"\\\1", str(text))
