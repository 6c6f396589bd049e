"""Rendering: each digest's views, the templates, the MIME message and its envelope, signed
links and tokens, DKIM."""
