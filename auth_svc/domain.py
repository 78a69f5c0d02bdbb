"""Rules of the auth service, with no I/O."""
