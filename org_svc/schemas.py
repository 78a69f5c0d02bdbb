"""Wire shapes of the organizations service (marshmallow)."""
