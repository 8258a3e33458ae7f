"""Test support: a fake W&B server that the real ``wandb`` SDK talks to over loopback.

``FakeWandb`` serves an in-memory registry (``log_artifact``, ``set_alias``, ...), records
every request (``requests``, ``operations()``, ``unhandled``) and injects ``Fault``s.
It never imports wandb. ``python -m wbsync.testing.server`` runs it on its own.

The names below load on first use, so that ``python -m wbsync.testing.server`` runs that
module once (importing it here first would make Python warn about a second copy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wbsync.testing.fake_server import DEFAULT_FEATURES, FakeWandb
    from wbsync.testing.faults import Fault
    from wbsync.testing.network import PROFILES, LinkPolicy, NetworkProfile
    from wbsync.testing.routes import RecordedRequest
    from wbsync.testing.world import LoggedVersion

__all__ = ["DEFAULT_FEATURES", "PROFILES", "FakeWandb", "Fault", "LinkPolicy", "LoggedVersion", "NetworkProfile",
           "RecordedRequest"]


def __getattr__(name: str) -> Any:
    module: Any
    if name in ("DEFAULT_FEATURES", "FakeWandb"):
        from wbsync.testing import fake_server as module
    elif name == "Fault":
        from wbsync.testing import faults as module
    elif name in ("PROFILES", "LinkPolicy", "NetworkProfile"):
        from wbsync.testing import network as module
    elif name == "RecordedRequest":
        from wbsync.testing import routes as module
    elif name == "LoggedVersion":
        from wbsync.testing import world as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value
