"""`digestd serve`: the web endpoints (one-click unsubscribe so far) on one small, hardened HTTP server."""
