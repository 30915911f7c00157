"""Write the public listing, card pages and certificate pages as a static site."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal.certificates.export import export_site


class Command(BaseCommand):
    help = (
        "Export the public pages (HTML, JSON, CSV, SVG) into DIR as a site that works offline: "
        "Chinese pages at the root, English pages under en/, with links between the two."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="output folder; it must be empty or absent")

    def handle(self, *args, directory: Path, **options):
        directory = directory.resolve()
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise CommandError(f"export_site: {directory} is not an empty folder; give a new or empty folder so no file is overwritten")
        report = export_site(directory)
        self.stdout.write(f"exported {report.pages} files to {directory} (Chinese at the root, English under en/)")
