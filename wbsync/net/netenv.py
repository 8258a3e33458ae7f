"""What the environment says about the network: which proxy a URL goes through, which
certificates to trust. One rule for every connection wbsync opens itself (file downloads, the
reachability check), the same the SDK follows, so that a machine where ``wandb`` works behind
a corporate proxy or TLS-inspecting gateway downloads with wbsync too.

* Proxy: ``HTTPS_PROXY`` / ``HTTP_PROXY`` by the URL's scheme, then ``ALL_PROXY`` (upper or
  lower case), unless ``NO_PROXY`` names the host.
* Trust: the system's certificate authorities plus ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE``
  (the variable ``requests``, and so the SDK, reads); nothing is checked when
  ``WANDB_INSECURE_DISABLE_SSL`` is on, as with the SDK.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Proxy:
    url: str
    variable: str  # HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (as spelled in the environment)


def proxy_for(url: str) -> Proxy | None:
    """The proxy for ``url`` (the usual *_PROXY / NO_PROXY variables), or None to go direct."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass_environment(parts.hostname):
        return None
    scheme = parts.scheme.lower()
    for name in (f"{scheme}_proxy", "all_proxy"):
        for variable in (name.upper(), name):
            if os.environ.get(variable):
                return Proxy(os.environ[variable], variable)
    return None


def insecure() -> bool:
    return os.environ.get("WANDB_INSECURE_DISABLE_SSL", "").lower() in ("1", "true", "yes")


def tls_context() -> ssl.SSLContext:
    """Trust what the SDK trusts (see the module's docstring)."""
    context = ssl.create_default_context()
    if insecure():
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        bundle = os.environ.get(variable)
        if bundle and os.path.isfile(bundle):
            context.load_verify_locations(cafile=bundle)
    return context
