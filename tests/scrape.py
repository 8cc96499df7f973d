"""Reading GET /metrics in tests: every sample as {(name, ((label, value), …)): value}."""

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token"


def scrape(client: Client | None = None, token: str = TOKEN) -> dict:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    """A sample's value; 0 for a series that does not exist yet (a counter never touched)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: dict, after: dict) -> dict:
    """The samples that changed, with how much, leaving out timing-dependent ones."""
    changes = {}
    for key, now in after.items():
        name = key[0]
        if name.endswith(("_created", "_sum")) or name.startswith(("process_", "python_")):
            continue
        if name.endswith("_bucket"):
            continue
        delta = now - before.get(key, 0.0)
        if delta:
            changes[key] = delta
    return changes
