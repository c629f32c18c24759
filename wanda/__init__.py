"""WANDA: an open telescope controller for the Raspberry Pi HQ camera."""

__version__ = "0.1.0"

# The Server header of every answer, to whoever asks (a 401 too): `wanda doctor` knows a port held
# by WANDA itself by it. No version: that is for those who may read /api/health.
SERVER = "WANDA"
