"""Rules of the employees service, with no I/O."""
