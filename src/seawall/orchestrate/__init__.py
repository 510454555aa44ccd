"""Orchestration: pure planners compile operations into flows of idempotent steps that
run on OpenStack TaskFlow (see ``plans``, ``tasks`` and ``engine``)."""
