"""The fixtures every test here can use: the app's (fixtures.py) and the real servers'
(servers.py: S3, SMTP, Redis and the worker)."""

pytest_plugins = ["tests.fixtures", "tests.servers"]
