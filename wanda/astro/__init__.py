"""The astronomy: pure functions on images (measurement, stretch; later solving and stacking) and
on the sky (the star catalogue, the projection, sidereal time). The one I/O here is reading the
catalogue's wheels, once per process, from the thread that first asks (never the event loop).

Nothing here knows threads, the event loop or the web (checked by import-linter): the threads
that run these functions live in wanda/analysis.py and wanda/camera.py.
"""
