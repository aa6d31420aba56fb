"""digestd: fetch new arXiv papers per keyword, mail digests, publish a Daily Papers README."""

__version__ = "0.1.0"
