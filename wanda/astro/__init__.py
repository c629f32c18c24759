"""The astronomy: pure functions on images (measurement, stretch; later solving and stacking).

Nothing here knows threads, the event loop or the web (checked by import-linter): the threads
that run these functions live in wanda/analysis.py and wanda/camera.py.
"""
