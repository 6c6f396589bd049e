"""newsletter: personalized research-paper email digests from daily paper listings."""

__version__ = "0.1.0"
