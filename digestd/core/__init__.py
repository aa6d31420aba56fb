"""The pure core: domain values and the decisions made on them (diff, plan, pause, links, tokens); no I/O."""
