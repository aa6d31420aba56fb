"""Operating an instance: systemd units, `status` and `preview`."""
