"""Rules of the notifications service, with no I/O."""
