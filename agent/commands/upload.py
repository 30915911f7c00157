"""`python -m agent upload`: send a bundle to the portal and print the submission's address.

The upload is resumable: the agent declares the bundle's size and sha256
(POST /api/v1/uploads/), sends byte ranges (PUT with Content-Range), and
completes it. When the connection breaks, it asks the portal how many bytes
arrived and continues from there, a bounded number of times; running the
command again later also continues the open upload, or starts a new one when
the portal has expired it. The portal keys
submissions by the bundle's sha256, so sending the same file again is safe
and returns the stored submission. `--single-request` uses the older
one-request endpoint (POST /api/v1/bundles/), streamed from the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests

from agent import __version__
from agent.commands._fields import format_fields
from agent.errors import EXIT_OK, EXIT_REJECTED, EXIT_REMOTE, EXIT_USAGE, AgentError
from agent.i18n import N_, _, accept_language, ngettext

UPLOAD_PATH = "/api/v1/bundles/"
SESSIONS_PATH = "/api/v1/uploads/"
# The portal's Django admin page of API tokens (rest_framework.authtoken's TokenProxy) and its web upload page.
TOKEN_ADMIN_PATH = "/admin/authtoken/tokenproxy/"
WEB_UPLOAD_PATH = "/submissions/upload/"
# Error codes of Django REST framework for a token the portal does not accept (401, or 403 without a WWW-Authenticate scheme).
TOKEN_REJECTED_CODES = ("authentication_failed", "not_authenticated")
READ_BLOCK_BYTES = 1024 * 1024
# Upper bounds of --chunk-mib and --retries. The agent reads one byte range into memory, and the pause
# between retries grows to 30 s, so 100 retries already wait close to an hour.
MAX_CHUNK_MIB = 1024
MAX_RETRIES = 100
# The portal's submission states (portal.submissions.models.Submission.State), as upload prints them.
SUBMISSION_STATES = {"received": N_("received"), "validating": N_("validating"), "judged": N_("judged"), "rejected": N_("rejected")}

logger = logging.getLogger(__name__)


def add_arguments(parser):
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help=_("bundle file written by `python -m agent bundle`"))
    parser.add_argument("--portal", default=os.environ.get("AGENT_PORTAL_URL"), help=_("portal base URL, for example https://cert.example.com (default: $AGENT_PORTAL_URL)"))
    parser.add_argument("--token", default=os.environ.get("AGENT_PORTAL_TOKEN"), help=_("API token of a member of your vendor (default: $AGENT_PORTAL_TOKEN)"))
    parser.add_argument("--vendor", help=_("vendor identifier; needed only when your account belongs to several vendors"))
    parser.add_argument("--timeout", type=float, default=600.0, help=_("seconds to wait for the portal's reply (default: 600)"))
    parser.add_argument("--json", action="store_true", help=_("print the portal's reply as one JSON line instead of text"))
    parser.add_argument("--chunk-mib", type=int, default=16, help=_("size of each byte range in MiB, from 1 to {max} (default: 16)").format(max=MAX_CHUNK_MIB))
    parser.add_argument("--retries", type=int, default=5, help=_("times to resume after a broken connection before giving up, from 0 to {max} (default: 5)").format(max=MAX_RETRIES))
    parser.add_argument("--single-request", action="store_true", help=_("send the whole bundle in one request, without resuming"))


class MultipartStream:
    """A multipart/form-data body read from the bundle file in blocks; `len()` gives the Content-Length."""

    def __init__(self, path: Path, fields: dict[str, str]):
        self.boundary = uuid.uuid4().hex
        head = b"".join(self._field(name, value) for name, value in fields.items())
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="bundle"; filename="{path.name}"\r\n'
            "Content-Type: application/x-tar\r\n\r\n"
        ).encode("utf-8")
        self._parts = [head, path, f"\r\n--{self.boundary}--\r\n".encode("ascii")]
        self._length = len(head) + path.stat().st_size + len(self._parts[2])
        self._current = None

    def _field(self, name: str, value: str) -> bytes:
        return f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode("utf-8")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        size = READ_BLOCK_BYTES if size is None or size < 0 else size
        while self._current is not None or self._parts:
            if self._current is None:
                part = self._parts.pop(0)
                self._current = open(part, "rb") if isinstance(part, Path) else _BytesReader(part)
            data = self._current.read(size)
            if data:
                return data
            self._current.close()
            self._current = None
        return b""


class _BytesReader:
    def __init__(self, data: bytes):
        self._data = memoryview(data)

    def read(self, size: int) -> bytes:
        chunk, self._data = bytes(self._data[:size]), self._data[size:]
        return chunk

    def close(self) -> None:
        pass


def check_arguments(args) -> str:
    """Return the upload URL, or raise for a missing portal, token or bundle."""
    if not args.portal:
        raise AgentError("portal_url_missing", _("no portal URL given"), _("pass --portal URL or set AGENT_PORTAL_URL"), EXIT_USAGE)
    if not is_web_address(args.portal):
        raise AgentError("portal_url_invalid", _("portal URL {value} is not an http:// or https:// address with a host name and a port from 1 to 65535").format(value=repr(args.portal)),
                         _("pass the portal's base URL with --portal or AGENT_PORTAL_URL, for example https://cert.example.com"), EXIT_USAGE)
    address = urlsplit(args.portal)
    if address.username is not None or address.password is not None:
        # The URL is shown without its user part, so that a password never reaches the terminal or a log.
        without_user = address._replace(netloc=address.netloc.rpartition("@")[2]).geturl()
        raise AgentError("portal_url_credentials", _("portal URL {value} contains a user name or password").format(value=repr(without_user)),
                         _("pass the portal's base URL without them; the agent signs in with the API token"), EXIT_USAGE)
    check_range("--chunk-mib", args.chunk_mib, 1, MAX_CHUNK_MIB)
    check_range("--retries", args.retries, 0, MAX_RETRIES)
    check_bundle_file(args.bundle)
    if not args.token:
        raise AgentError("portal_token_missing", _("no API token given"),
                         _("pass --token TOKEN or set AGENT_PORTAL_TOKEN; the portal's staff give you one"), EXIT_USAGE)
    return args.portal.rstrip("/") + UPLOAD_PATH


def check_bundle_file(path: Path) -> None:
    """Raise for a bundle path that is missing, empty or not a tar archive, before any request is sent."""
    if not path.is_file():
        raise AgentError("bundle_not_found", _("bundle file not found: {path}").format(path=path),
                         _("pass the .tar file that `python -m agent bundle` wrote"), EXIT_USAGE)
    if path.stat().st_size == 0:
        raise AgentError("bundle_empty", _("bundle file {path} is empty").format(path=path),
                         _("pass the .tar file that `python -m agent bundle` wrote, or run bundle again"), EXIT_USAGE)
    if not tarfile.is_tarfile(path):
        raise AgentError("bundle_not_archive", _("bundle file {path} is not a tar archive").format(path=path),
                         _("pass the .tar file that `python -m agent bundle` wrote, or run bundle again"), EXIT_USAGE)


def check_range(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise AgentError("option_out_of_range", _("{option} {value} is out of range").format(option=option, value=value),
                         _("pass {option} with a whole number from {low} to {high}").format(option=option, low=low, high=high), EXIT_USAGE)


def is_web_address(text: str) -> bool:
    """True for an http:// or https:// URL with a host name, and a port from 1 to 65535 where it names one."""
    try:
        address = urlsplit(text)
        # Reading .port raises ValueError for a port that is not a number from 0 to 65535.
        return address.scheme in ("http", "https") and bool(address.hostname) and address.port != 0
    except ValueError:  # such as an unclosed [ of an IPv6 address
        return False


def send(url: str, args) -> requests.Response:
    fields = {"vendor": args.vendor} if args.vendor else {}
    body = MultipartStream(args.bundle, fields)
    headers = {
        "Authorization": f"Token {args.token}",
        "Content-Type": body.content_type,
        "User-Agent": f"accel-cert-agent/{__version__}",
        "Accept": "application/json",
        "Accept-Language": accept_language(),
    }
    logger.debug("uploading %s (%d bytes) to %s", args.bundle, len(body), url)
    try:
        return requests.post(url, data=body, headers=headers, timeout=args.timeout)
    except requests.Timeout:
        raise AgentError("portal_timeout", _("the portal at {url} did not reply within {seconds:g} s").format(url=url, seconds=args.timeout),
                         _("try again later or raise --timeout; a repeated upload is safe"), EXIT_REMOTE) from None
    except requests.RequestException as error:
        raise unreachable(url, error) from None


def unreachable(url: str, error: Exception) -> AgentError:
    return AgentError("portal_unreachable", _("cannot reach the portal at {url}: {error}").format(url=url, error=type(error).__name__),
                      _("check --portal and the network; a repeated upload is safe"), EXIT_REMOTE)


def parse_reply(response: requests.Response, portal: str) -> dict:
    """Return the portal's submission from a reply, or raise AgentError for an error reply. `portal` is the base URL."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    if response.status_code in (200, 201) and isinstance(body, dict) and "url" in body:
        return body
    if isinstance(body, dict) and "code" in body:
        hint = _("fix what the message names and upload again")
        if response.status_code == 401 or body["code"] in TOKEN_REJECTED_CODES:
            hint = token_hint(portal)
        raise AgentError(
            "upload_rejected",
            # The detail is the portal's own sentence, already in the language asked for with Accept-Language.
            _("the portal rejected the upload with HTTP {status} [{code}]: {detail}").format(
                status=response.status_code, code=body["code"], detail=body.get("detail", "")),
            hint, EXIT_REMOTE,
        )
    raise AgentError("portal_reply_invalid", _("the portal replied with HTTP {status} and no usable body").format(status=response.status_code),
                     _("check that --portal is the portal's base URL"), EXIT_REMOTE)


def token_hint(portal: str) -> str:
    """Return the hint for a token the portal did not accept: where to pass it, and where a new one comes from.

    The portal's API tokens are Django REST framework tokens (3.18), which
    do not expire: a token stops working when staff delete or replace it in
    the Django admin. Vendors have no page that issues tokens, but they can
    upload on the portal's web page after logging in.
    """
    base = portal.rstrip("/")
    return _("pass a valid API token with --token TOKEN or in the environment variable AGENT_PORTAL_TOKEN. A token stops working "
             "when the portal's staff delete or replace it: ask them for a new one (they create tokens in the portal's admin, "
             "{admin}), or log in and upload the bundle at {upload}").format(admin=base + TOKEN_ADMIN_PATH, upload=base + WEB_UPLOAD_PATH)


def run(args) -> int:
    url = check_arguments(args)
    if args.single_request:
        response = send(url, args)
        return report(parse_reply(response, args.portal), response.status_code == 200, args)
    body, already_stored = ResumableUpload(args).run()
    return report(body, already_stored, args)


def report(body: dict, already_stored: bool, args) -> int:
    """Print the submission; exit with EXIT_REJECTED when the portal has already rejected the bundle."""
    state = body.get("state", "unknown")
    exit_code = EXIT_REJECTED if state == "rejected" else EXIT_OK
    if already_stored:
        # On stderr with --json, so that stdout stays one JSON line.
        print(_("the portal already has this bundle as submission {id}, so it made no new submission").format(id=body["id"]),
              file=sys.stderr if args.json else sys.stdout)
        if body.get("notice_code") == "bundle_revalidating":
            # The portal's own sentence, in the language asked for with Accept-Language: it validates the submission again.
            print(body.get("notice", ""), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({**body, "already_stored": already_stored}, ensure_ascii=False))
        return exit_code
    print(format_fields([("submission", _("{id} ({state})").format(id=body["id"], state=_(SUBMISSION_STATES.get(state, state)))),
                         ("url", body["url"])]))
    if state == "rejected":
        print(f"error[{body.get('error_code') or 'rejected'}]: "
              + _("the portal rejected the bundle: {detail}").format(detail=body.get("error_detail", "")), file=sys.stderr)
    elif state in ("received", "validating"):
        print(_("the portal is validating the bundle; open the url to see the verdict"))
    return exit_code


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(READ_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


class ResumableUpload:
    """Declare, send the missing byte ranges, complete; after a broken connection, ask where to continue."""

    def __init__(self, args):
        self.args = args
        self.base = args.portal.rstrip("/")
        self.size = args.bundle.stat().st_size
        self.chunk = args.chunk_mib * 1024 * 1024
        self.breaks = 0
        self.contacted = False  # retries start after the first reply: a wrong --portal fails at once
        self.headers = {"Authorization": f"Token {args.token}", "User-Agent": f"accel-cert-agent/{__version__}", "Accept": "application/json",
                        "Accept-Language": accept_language()}

    def run(self) -> tuple[dict, bool]:
        """Upload the bundle; when the portal has expired the open upload, start one new upload from byte 0."""
        try:
            return self.upload_once()
        except _Expired as expired:
            logger.warning(_("the portal expired the open upload ({detail}); starting a new upload from byte 0").format(detail=expired.detail))
        try:
            return self.upload_once()
        except _Expired as expired:
            raise AgentError("upload_expired", _("the portal expired the new upload too: {detail}").format(detail=expired.detail),
                             _("run the same command again; if it keeps failing, ask the portal's staff"), EXIT_REMOTE) from None

    def upload_once(self) -> tuple[dict, bool]:
        session = self.declare()
        if session.get("submission"):
            return session["submission"], True
        while session["received"] < self.size:
            session = self.send_range(session)
        reply = self.call("post", session["complete_url"])
        raise_if_expired(reply)
        return parse_reply(reply, self.base), reply.status_code == 200

    def declare(self) -> dict:
        fields = {"size": self.size, "sha256": file_sha256(self.args.bundle), "name": self.args.bundle.name}
        if self.args.vendor:
            fields["vendor"] = self.args.vendor
        session = session_reply(self.base, self.call("post", self.base + SESSIONS_PATH, json=fields))
        if session.get("submission"):
            # The portal stored this digest before: its reply is a completed upload naming the submission, so no byte is sent.
            return session
        if session["received"] >= self.size:
            logger.info(_("the portal has received all {size} bytes of the open upload {id}; completing it").format(
                size=self.size, id=session["id"]))
        elif session["received"]:
            logger.info(_("continuing the open upload {id} from byte {received} of {size}").format(
                id=session["id"], received=session["received"], size=self.size))
        return session

    def send_range(self, session: dict) -> dict:
        start = session["received"]
        end = min(start + self.chunk, self.size) - 1
        with open(self.args.bundle, "rb") as stream:
            stream.seek(start)
            data = stream.read(end - start + 1)
        headers = {"Content-Range": f"bytes {start}-{end}/{self.size}", "Content-Type": "application/octet-stream"}
        try:
            reply = self.call("put", session["upload_url"], data=data, headers=headers, resumable=True)
        except _Broken:
            return session_reply(self.base, self.call("get", session["upload_url"]))
        if reply.status_code == 409:
            return session_reply(self.base, self.call("get", session["upload_url"]))
        logger.debug("sent bytes %d-%d of %d", start, end, self.size)
        return session_reply(self.base, reply)

    def call(self, method: str, url: str, *, resumable: bool = False, **kwargs) -> requests.Response:
        """Send one request; a broken connection is retried after a pause until --retries breaks in total."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        while True:
            try:
                reply = requests.request(method, url, headers=headers, timeout=self.args.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                if not self.contacted:
                    raise unreachable(url, error) from None
                self.count_break(url, error)
                if resumable:
                    raise _Broken() from None
            except requests.RequestException as error:
                raise unreachable(url, error) from None
            else:
                self.contacted = True
                return reply

    def count_break(self, url: str, error: Exception) -> None:
        self.breaks += 1
        if self.breaks > self.args.retries:
            raise AgentError(
                "portal_unreachable",
                ngettext("cannot reach the portal at {url} after {retries} retry: {error}",
                         "cannot reach the portal at {url} after {retries} retries: {error}", self.args.retries).format(url=url, retries=self.args.retries, error=type(error).__name__),
                _("check --portal and the network, then run the same command again: it continues the upload"), EXIT_REMOTE,
            )
        logger.warning(_("connection to the portal broke ({error}); retry {attempt} of {retries}").format(
            error=type(error).__name__, attempt=self.breaks, retries=self.args.retries))
        time.sleep(min(30.0, 0.5 * 2 ** (self.breaks - 1)))


class _Broken(Exception):
    """A range request whose connection broke; the caller asks the portal where to continue."""


class _Expired(Exception):
    """The portal expired the open upload (HTTP 410, upload_session_expired) and deleted its bytes."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def raise_if_expired(response: requests.Response) -> None:
    if response.status_code != 410:
        return
    try:
        body = response.json()
    except ValueError:
        return
    if isinstance(body, dict) and body.get("code") == "upload_session_expired":
        raise _Expired(str(body.get("detail", "")))


def session_reply(portal: str, response: requests.Response) -> dict:
    raise_if_expired(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code in (200, 201) and isinstance(body, dict) and "upload_url" in body:
        return body
    return parse_reply(response, portal)
