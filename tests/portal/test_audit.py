import pytest
from django.db import transaction
from django.urls import reverse

from portal.audit.models import AppendOnlyError, AuditEntry
from portal.audit.services import record

from .conftest import login


@pytest.fixture
def entry(vendor, owner):
    with transaction.atomic():
        return record("vendor.checked", vendor, actor=owner, data={"note": "x"}, remote_addr="127.0.0.1")


def test_entry_names_actor_and_object(entry, vendor):
    assert entry.actor_label == "owner"
    assert entry.object_type == "registry.vendor"
    assert entry.object_id == str(vendor.pk)


@pytest.mark.parametrize("change", [
    lambda entry: entry.save(),
    lambda entry: entry.delete(),
    lambda entry: AuditEntry.objects.filter(pk=entry.pk).update(action="x"),
    lambda entry: AuditEntry.objects.filter(pk=entry.pk).delete(),
])
def test_entries_are_append_only(entry, change):
    with pytest.raises(AppendOnlyError):
        change(entry)
    assert AuditEntry.objects.get(pk=entry.pk).action == "vendor.checked"


def test_record_outside_transaction_raises(vendor, settings):
    # pytest-django wraps each test in a transaction, so leave it through a non-atomic connection check.
    connection = transaction.get_connection()
    previous = connection.in_atomic_block
    connection.in_atomic_block = False
    try:
        with pytest.raises(RuntimeError):
            record("vendor.checked", vendor)
    finally:
        connection.in_atomic_block = previous


def test_log_page_shows_data_as_pairs(client, staff, vendor):
    with transaction.atomic():
        record("vendor.checked", vendor, actor=staff, data={"code": "bad_<b>", "levels": {"pretraining": 2}, "count": 3, "note": "中文"})
    login(client, staff)
    page = client.get(reverse("audit-log")).content.decode()
    assert '<span class="key">code</span>: <code>bad_&lt;b&gt;</code>' in page
    assert '<span class="key">levels</span>: <code>{&quot;pretraining&quot;: 2}</code>' in page
    assert '<span class="key">count</span>: <code>3</code>' in page
    assert '<span class="key">note</span>: <code>中文</code>' in page
    assert "{&#x27;code&#x27;" not in page
    assert "bad_<b>" not in page


def test_data_items_of_non_object(entry):
    entry.data = ["a", 1]
    assert entry.data_items() == [("", '["a", 1]')]
