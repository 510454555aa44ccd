"""The REST API of ``seawall serve`` (``/v1``)."""
