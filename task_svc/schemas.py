"""Wire shapes of the tasks service (marshmallow)."""
