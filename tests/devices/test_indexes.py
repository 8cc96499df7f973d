"""The tables /events writes carry no index that another index already covers: each one costs
every event an index insertion."""

import pytest
from django.db import connection

from devices.models import AppUser, Device, Event


@pytest.mark.parametrize("model", [AppUser, Device, Event])
def test_no_index_holds_only_the_tenant_when_others_lead_with_it(db, model):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    indexed = [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]

    assert ["tenant_id"] not in indexed
    assert any(len(columns) > 1 and columns[0] == "tenant_id" for columns in indexed)
