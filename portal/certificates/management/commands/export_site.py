"""Write the public listing, card pages and certificate pages as a static site."""

import os
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from portal.certificates.export import export_site
from portal.env import parse_base_url


class Command(BaseCommand):
    help = (
        "Export the public pages (HTML, JSON, CSV, SVG) into DIR as a site that works offline: "
        "Chinese pages at the root, English pages under en/, with links between the two."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="output folder; it must be empty or absent")
        parser.add_argument(
            "--base-url", default="",
            help="public address of the live portal, such as https://cert.example.org, for the feeds' url fields "
                 "and the verification links (default: PORTAL_BASE_URL)",
        )

    def handle(self, *args, directory: Path, base_url: str, **options):
        base_url = self.resolve_base_url(base_url)
        directory = check_target(directory.resolve())
        try:
            report = export_site(directory, base_url)
        except OSError as error:
            raise CommandError(f"export_site: writing {error.filename or directory} failed: {error.strerror}; give a folder you can write to") from None
        self.stdout.write(f"exported {report.pages} files to {directory} (Chinese at the root, English under en/)")

    @staticmethod
    def resolve_base_url(option: str) -> str:
        if not option:
            if settings.PORTAL_BASE_URL:
                return settings.PORTAL_BASE_URL
            raise CommandError(
                "export_site: no public address for the links in the feeds and certificate pages; "
                "pass --base-url https://your.portal.example or set PORTAL_BASE_URL"
            )
        try:
            return parse_base_url("--base-url", option)
        except ImproperlyConfigured as error:
            raise CommandError(f"export_site: {error}") from None


def check_target(directory: Path) -> Path:
    """Return `directory` when it is absent or an empty folder that can be written; raise CommandError naming it otherwise."""
    if not directory.exists():
        parent = next((folder for folder in directory.parents if folder.exists()), None)
        if parent is None or not parent.is_dir():
            raise CommandError(f"export_site: cannot create {directory} because {parent} is not a folder; give a path inside a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CommandError(f"export_site: cannot create {directory} because {parent} is not writable; give a folder you can write to")
        return directory
    if not directory.is_dir():
        raise CommandError(f"export_site: {directory} is a file, not a folder; give a new or empty folder")
    if any(directory.iterdir()):
        raise CommandError(f"export_site: the folder {directory} is not empty; give a new or empty folder so no file is overwritten")
    return directory
