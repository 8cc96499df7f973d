"""The OpenAPI schema documents every endpoint, its fields and its error statuses."""

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.db import connection


@pytest.fixture
def schema(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_documents_the_refresh_token_contract(schema):
    operation = schema["paths"]["/devices/refresh-token"]["post"]

    assert set(operation["responses"]) >= {"200", "400", "401", "404", "409"}
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    fields = schema["components"]["schemas"][body]
    assert set(fields["required"]) == {"tenant_id", "api_key", "old_token", "new_token"}


def test_the_schema_documents_every_events_field(schema):
    operation = schema["paths"]["/events"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    fields = schema["components"]["schemas"][body]

    assert set(fields["required"]) == {
        "tenant_id",
        "api_key",
        "event_name",
        "event_time",
        "device_token",
        "platform",
        "push_permission_granted",
        "timezone",
        "language",
        "country",
        "session_id",
    }
    assert set(operation["responses"]) >= {"200", "400", "401"}


def test_the_docs_page_is_served_without_internet_assets(client, db):
    page = client.get("/api/docs/").content.decode()

    assert "swagger" in page.lower()
    assert "cdn.jsdelivr" not in page and "unpkg" not in page


def test_the_schema_is_byte_for_byte_the_published_one(tmp_path, db):
    # The schema is a contract with every client: it changes only on purpose. After such a
    # change, write the new one with `manage.py spectacular --file tests/openapi-schema.<vendor>.yaml`
    # on SQLite and on PostgreSQL (integer fields' ranges come from the database backend).
    snapshot = Path(__file__).resolve().parent / f"openapi-schema.{connection.vendor}.yaml"
    call_command("spectacular", "--file", str(tmp_path / "schema.yaml"))

    assert (tmp_path / "schema.yaml").read_bytes() == snapshot.read_bytes()
