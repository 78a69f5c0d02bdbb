"""Rules of the organizations service, with no I/O."""
