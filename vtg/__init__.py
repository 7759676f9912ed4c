"""vtg: video temporal grounding."""

__version__ = "0.1.0"
