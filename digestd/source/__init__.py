"""The arXiv source: bounded HTTP and a strict Atom reader."""
