"""Code every service of the mesh uses, and nothing service-specific."""
