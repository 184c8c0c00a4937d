"""An in-process SAMP hub (standard profile only, found through SAMP_HUB) and a client that
plays TOPCAT, for tests of SAMP in both directions."""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def hub_and_topcat(lock_path, monkeypatch):
    """Yield a connected client standing in for TOPCAT while a hub runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from astropy.samp import SAMPHubServer, SAMPIntegratedClient, conf
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{lock_path.as_uri()}")
    with conf.set_temp("use_internet", False):
        hub = SAMPHubServer(web_profile=False, lockfile=str(lock_path), pool_size=2)
        hub.start()
        topcat = SAMPIntegratedClient(name="topcat-stand-in")
        topcat.connect(hub=hub)
    try:
        yield topcat
    finally:
        topcat.disconnect()
        hub.stop()
