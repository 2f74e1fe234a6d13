"""The tools start and set up the app, so their tests use the app's fixtures and servers
(backend/tests/fixtures.py and servers.py)."""

pytest_plugins = ["tests.fixtures", "tests.servers"]
