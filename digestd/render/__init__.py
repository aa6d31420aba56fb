"""Rendering, pure given the templates: digests (HTML and text) and the Daily Papers README."""
