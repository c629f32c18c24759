"""Shared fixtures: the real app from the app factory on the simulated sky."""

from __future__ import annotations

import dataclasses

import aiohttp.web_app
import pytest

from wanda.app import create_app
from wanda.config import Config

# The browser tests' fixtures, shared by every tests/test_browser*.py.
pytest_plugins = ["in_browser"]


def pytest_configure(config):
    # `pytest` runs everything; `pytest -m "not slow"` the fast tier for while you develop.
    config.addinivalue_line(
        "markers", "slow: a real `wanda` process or another subprocess, a browser, crashes or fuzzing (the slow tier)"
    )


@pytest.fixture(autouse=True)
def _forget_finished_apps():
    """aiohttp caches each (handler, app) pair's middleware chain, up to 1024 of them
    (``web_app._cached_build_middleware``): in a test run that cache keeps hundreds of finished
    apps alive, each with its simulated sky and buffers (the suite grew past 20 GB and was killed).
    A server has one app for its life; the tests make one a test, so the cache goes with each."""
    yield
    cached = getattr(aiohttp.web_app, "_cached_build_middleware", None)
    if cached is not None:
        cached.cache_clear()


@pytest.fixture
def config(tmp_path) -> Config:
    # Alpaca discovery on a free port of the loopback: tests never listen beyond it.
    return Config(
        camera="sim",
        captures=tmp_path / "captures",
        data_dir=tmp_path / "state",
        port=0,
        host="127.0.0.1",
        alpaca_discovery_port=0,
    )


@pytest.fixture
def make_client(aiohttp_client, config):
    """Build a test client for the real app; ``camera`` replaces the backend the config selects,
    other keyword arguments change the config."""

    async def make(camera=None, **changes):
        app = create_app(dataclasses.replace(config, **changes), camera=camera)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def client(make_client):
    return await make_client()
