"""File names declared for a resumable upload: control characters are rejected before they reach the database."""

import json

import pytest
from django.urls import reverse

from portal.submissions.models import UploadSession

SHA256 = "a" * 64


def declare_raw(api, name_json: str):
    """Declare an upload whose name is the JSON string literal `name_json`, sent as written."""
    body = '{"size": 10, "sha256": "%s", "name": %s}' % (SHA256, name_json)
    return api.generic("POST", reverse("api-upload-create"), body, content_type="application/json")


@pytest.mark.parametrize("name_json, character", [
    (r'"a\u0000b.tar"', "U+0000"),
    (r'"a\nb.tar"', "U+000A"),
    (r'"a\tb.tar"', "U+0009"),
    (r'"a\u007fb.tar"', "U+007F"),
    (r'"a\u0085b.tar"', "U+0085"),
    (r'"a\ud800b.tar"', "U+D800"),
])
def test_control_character_in_name_rejected(owner_api, name_json, character):
    reply = declare_raw(owner_api, name_json)

    assert reply.status_code == 400
    assert reply.json()["code"] == "upload_name_invalid"
    assert character in reply.json()["detail"]
    assert UploadSession.objects.count() == 0


@pytest.mark.parametrize("name", ["run.tar", "结果包　第一次.tar", "run (1).tar"])
def test_printable_name_accepted(owner_api, name):
    reply = declare_raw(owner_api, json.dumps(name))

    assert reply.status_code == 201
    assert UploadSession.objects.get().name == name
