"""The gateway's routes, one module per service they front. Each module
defines a mixin of ``@api`` entrypoints; ``gateway_svc.service`` composes them."""
