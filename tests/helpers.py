"""Helpers for tests."""
import time

import eventlet

from shared.telemetry import EVENT_DUPLICATES, EVENT_HANDLED


def wait_until(check, timeout=10.0, interval=0.02, what="condition"):
    """Bounded poll for an asynchronous effect; returns check()'s truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        eventlet.sleep(interval)


def events_handled(service: str, handler: str | None = None) -> float:
    """How many events the in-process handlers of ``service`` (of ``handler`` only,
    if named) have settled so far: handled (``events_handled_total``) or skipped as
    a copy of one (``event_duplicates_total``: a redelivery in its first's batch, or
    found done by the ledger). How a test waits for the events of a handler that
    keeps no ledger to say so."""
    return sum(sample.value for counter in (EVENT_HANDLED, EVENT_DUPLICATES)
               for metric in counter.collect() for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["service"] == service
               and handler in (None, sample.labels["handler"]))


def self_signed(directory, hosts=("127.0.0.1",), name="test") -> tuple[str, str]:
    """A self-signed CA certificate for ``hosts`` (IP addresses) and its key, written to
    ``directory``: (cert path, key path). The tests' https servers use it, and clients
    trust it as their CA bundle."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
