"""Django template comments: `{# #}` ends on its own line, so a longer one must be `{% comment %}`."""

from pathlib import Path

from django.conf import settings
from django.template.base import Lexer, TokenType
from django.urls import reverse

from .conftest import login
from .test_report_inputs import OTHER, judged_with_lambada


def project_templates() -> list[Path]:
    """Return every template file of the project: the templates folder and each app's templates."""
    folders = [Path(folder) for folder in settings.TEMPLATES[0]["DIRS"]]
    folders += sorted(Path(settings.BASE_DIR, "portal").glob("*/templates"))
    return sorted(path for folder in folders for path in folder.rglob("*.html"))


def test_templates_found():
    names = [path.name for path in project_templates()]
    assert "_inputs.html" in names
    assert "detail.html" in names


def test_no_comment_reaches_text():
    """Django's lexer reads `{#` without a `#}` on the same line as text, which the page then shows."""
    slips = []
    for path in project_templates():
        for token in Lexer(path.read_text(encoding="utf-8")).tokenize():
            if token.token_type == TokenType.TEXT and "{#" in token.contents:
                slips.append(f"{path}:{token.lineno}")
    assert slips == []


def test_submission_page_has_no_comment(client, tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    submission, member = judged_with_lambada(tmp_path, rule_pack, lab_key, OTHER, django_capture_on_commit_callbacks)
    login(client, member)
    client.cookies["django_language"] = "en"

    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()

    assert "Inputs compared with the reference" in page
    assert "{#" not in page
    assert "#}" not in page
