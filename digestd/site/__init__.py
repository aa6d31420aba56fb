"""The static site: day pages, an index and Atom feeds (site/), plus archive/*.md, from state/archive.json."""
