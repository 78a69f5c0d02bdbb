"""Tooling around the mesh, not run by the services: the local mesh runner
(`python -m ops.mesh`), the operator CLI (`python -m ops.cli`), and the doc
generators (`ops.configdoc`, `ops.eventdoc`)."""
