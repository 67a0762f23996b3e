"""cordillera: a laptop-runnable reasoning VLA stack for autonomous driving."""

__version__ = "0.1.0"
