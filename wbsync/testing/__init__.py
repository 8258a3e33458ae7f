"""Test support: a fake W&B server that the real ``wandb`` SDK talks to over loopback.

``FakeWandb`` serves an in-memory registry (``log_artifact``, ``set_alias``, ...), records
every request (``requests``, ``operations()``, ``unhandled``) and injects ``Fault``s.
It never imports wandb.
"""

from .fake_server import DEFAULT_FEATURES, FakeWandb
from .faults import Fault
from .network import PROFILES, LinkPolicy, NetworkProfile
from .routes import RecordedRequest
from .world import LoggedVersion

__all__ = ["DEFAULT_FEATURES", "PROFILES", "FakeWandb", "Fault", "LinkPolicy", "LoggedVersion", "NetworkProfile",
           "RecordedRequest"]
