"""WANDA: an open telescope controller for the Raspberry Pi HQ camera."""

__version__ = "0.1.0"
