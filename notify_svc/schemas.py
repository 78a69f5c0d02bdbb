"""Wire shapes of the notifications service (marshmallow)."""
