"""The ``/v1`` routes, one module per resource group (the OpenAPI document's tags).

``create_app`` includes their routers in the order below, which is the order of the
tags in the interactive docs: :mod:`.catalogue` (sites, policies), :mod:`.workloads`,
:mod:`.checkpoints`, :mod:`.plans`, :mod:`.runs`, :mod:`.reports` (drills, reports),
:mod:`.usage`, :mod:`.events`, :mod:`.audit` (admins only). Every route authorises by
project through :mod:`seawall.service.access` (another project's object answers 404, like
a missing one), then by role with one :meth:`~seawall.service.rbac.Rbac.authorize` call
on the rule it declares with ``needs(...)`` (``x-rbac-rules`` in the OpenAPI document).

The route functions' names are the operation ids, and a docstring becomes the
operation's description: both are part of the published API.
"""
