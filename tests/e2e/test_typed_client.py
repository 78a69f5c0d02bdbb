"""The OpenAPI document generates a complete typed Python client (what a team
runs first: openapi-python-client) with no warnings, and a flow works through it
against the running mesh: register, the personal org, a team, a task assigned,
its status changed, its history and an attachment downloaded. The client runs in
a process of its own, as a team's code would (httpx, without eventlet)."""
import subprocess
import sys
from pathlib import Path

PACKAGE = "workforce_mesh_api_client"


def test_a_flow_through_the_generated_client(running_mesh, tmp_path):
    spec = tmp_path / "openapi.json"
    spec.write_bytes(running_mesh.get("/openapi.json").content)
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run([str(generator), "generate", "--path", str(spec), "--meta", "none",
                             "--output-path", str(tmp_path / PACKAGE)],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": f"{generator.parent}:/usr/bin:/bin"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output  # nothing dropped, nothing untyped
    flow = subprocess.run([sys.executable, str(Path(__file__).with_name("typed_client_flow.py")),
                           running_mesh.base_url],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert flow.returncode == 0 and "flow ok" in flow.stdout, flow.stdout + flow.stderr
