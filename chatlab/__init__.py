"""chatlab: a teaching and lab kit for concurrent network programming in Python."""

__version__ = "0.1.0"
