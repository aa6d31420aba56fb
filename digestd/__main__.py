"""`python -m digestd`: what the systemd unit runs (no console script needed)."""

from digestd.cli.app import main

main()
