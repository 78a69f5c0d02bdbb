"""Loaded first (``-p tests.green`` in pyproject's addopts), before pytest's
plugins: nameko's and schemathesis's import requests, urllib3 and ssl, and an
ssl imported before eventlet.monkey_patch() recurses forever when a client sets
up TLS (eventlet's SSLContext.minimum_version loop). Services under
``nameko run`` are patched first thing already."""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # as shared.run does

import eventlet  # noqa: E402

eventlet.monkey_patch()
