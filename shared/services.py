"""The services of the mesh, written once: nameko name -> package. The mesh
runner starts these (and the gateway), the gateway's health asks each, the
operator CLI and the event catalogue walk them."""
SERVICES = {
    "auth": "auth_svc", "organizations": "org_svc", "employees": "employee_svc",
    "teams": "team_svc", "tasks": "task_svc", "notifications": "notify_svc",
    "webhooks": "webhook_svc", "analytics": "analytics_svc", "search": "search_svc",
    "audit": "audit_svc",
}
GATEWAY = "gateway"
PROCESSES = {**SERVICES, GATEWAY: "gateway_svc"}  # every service the mesh runs, the gateway too
# one process each, whatever the replica count: the search service's tantivy index
# has one writer per directory (docs/search.md, Replicas)
SINGLE_PROCESS = frozenset({"search"})
PACKAGES = {package: name for name, package in SERVICES.items()}  # package -> nameko name
