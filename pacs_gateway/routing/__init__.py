"""Routing to the lead hospital: rules, destinations, the delivery ledger and its Huey queue.

Series that the gateway marks complete are matched against the routing rules
(:mod:`.rules`); one ledger row per (instance, destination) is written in the
same transaction (:mod:`.ledger`); Huey tasks in two priority lanes
(:mod:`.queue`) send them over one association per series (:mod:`.deliver`)
through a small sender interface (:mod:`.sender`). The ledger is the truth:
a periodic sweep re-queues whatever a crash or a lost task left behind.

Objects telerad creates itself go through the same rules with
:func:`route_instances`. Imports are lazy so ``telerad.settings`` can import
:mod:`.config` cheaply.
"""

from __future__ import annotations

__all__ = ["Router", "route_instances"]


def __getattr__(name: str):
    if name == "Router":
        from pacs_gateway.routing.router import Router

        return Router
    if name == "route_instances":
        from pacs_gateway.routing.ledger import route_instances

        return route_instances
    raise AttributeError(name)
