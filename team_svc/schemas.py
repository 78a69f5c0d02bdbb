"""Wire shapes of the teams service (marshmallow)."""
