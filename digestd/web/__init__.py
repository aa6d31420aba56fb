"""`digestd serve`: unsubscribe, manage, sign-up, more like this and the archive site."""
