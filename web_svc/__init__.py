"""The web console: a Flask backend-for-frontend over the gateway's HTTP API (docs/web.md)."""
