"""Wire shapes of the auth service (marshmallow)."""
