"""seawall: disaster recovery as a service for OpenStack."""

__version__ = "0.1.0"
