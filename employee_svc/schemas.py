"""Wire shapes of the employees service (marshmallow)."""
