"""Ownership routing: which unit leads a 12345 matter, which cooperate, and why (pure code, no I/O
besides reading the YAML rulebooks once at load time).

    from services.domain.routing import Router
    router = Router.load()
    decision = router.route(event)
"""

from services.domain.routing.router import Router

__all__ = ["Router"]
