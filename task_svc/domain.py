"""Rules of the tasks service, with no I/O."""
