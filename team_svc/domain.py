"""Rules of the teams service, with no I/O."""
