"""Capture sessions: the checks a request must pass (``checks``), their files and recovery
(``store``), and the runner that takes the frames (``runner``)."""
