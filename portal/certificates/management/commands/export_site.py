"""Write the public listing, card pages and certificate pages as a static site."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal.certificates.export import export_site


class Command(BaseCommand):
    help = "Export the public pages (HTML, JSON, CSV, SVG) into DIR as a site that works offline."

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="output folder; it must be empty or absent")
        parser.add_argument("--language", default="zh-hans", choices=["zh-hans", "en"], help="language of the pages (default zh-hans)")

    def handle(self, *args, directory: Path, language: str, **options):
        directory = directory.resolve()
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise CommandError(f"export_site: {directory} is not an empty folder; give a new or empty folder so no file is overwritten")
        report = export_site(directory, language)
        self.stdout.write(f"exported {report.pages} pages to {directory}")
