"""The network: one ranged GET, proxies and CA settings, the parallel fetcher that fills the store.
Imports ``wbsync.store`` and ``wbsync.core``.
"""
