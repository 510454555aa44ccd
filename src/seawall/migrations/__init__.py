"""Alembic migrations of the state database (see ``alembic.ini`` and ``seawall.db``)."""
