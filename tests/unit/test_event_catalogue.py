"""The event catalogue, the code and docs/events.md say the same thing."""
import re
from pathlib import Path

from shared.event_catalogue import BY_NAME, SERVICE_PACKAGES, consumers, markdown

ROOT = Path(__file__).resolve().parents[2]
PUBLISH = re.compile(r"""\.publish\(\s*["']([a-z_.]+)["']""")


def test_docs_events_md_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "events.md").read_text().strip() == markdown().strip(), \
        "run: python -m shared.event_catalogue > docs/events.md"


def test_every_published_event_is_catalogued_under_its_producer():
    for service, package in SERVICE_PACKAGES.items():
        for path in (ROOT / package).glob("**/*.py"):
            for name in PUBLISH.findall(path.read_text()):
                assert name in BY_NAME, f"{path}: {name} is not in shared/event_catalogue.py"
                owner = BY_NAME[name].producer
                assert owner == service, f"{path}: {name} belongs to {owner}"


def test_every_consumed_event_is_catalogued():
    for event_type, handlers in consumers().items():
        assert event_type in BY_NAME, f"{handlers} consume {event_type}, which nobody documents"


def test_every_event_has_a_consumer_or_is_documented_for_outside_subscribers():
    used = consumers()
    unheard = [s.name for s in BY_NAME.values() if s.name not in used and not s.external]
    assert unheard == [], f"published, consumed by nobody and not marked external: {unheard}"
