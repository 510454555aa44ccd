"""The dashboard of ``seawall serve`` (``/``)."""
