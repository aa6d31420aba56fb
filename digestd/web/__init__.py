"""`digestd serve`: the one-click unsubscribe endpoint."""
