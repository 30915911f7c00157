"""`python -m agent upload` to a portal address that does not answer: the reason in words."""

import socket
import tarfile

import pytest
import requests
import urllib3

from agent.cli import main
from agent.commands.upload import connection_failure
from agent.errors import EXIT_REMOTE


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "run.bundle.tar"
    (tmp_path / "run.json").write_text("{}", encoding="utf-8")
    with tarfile.open(path, "w") as archive:
        archive.add(tmp_path / "run.json", arcname="run.json")
    return path


@pytest.fixture
def closed_port():
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("single_request", [False, True])
@pytest.mark.parametrize(("language", "reason"), [("en", "the connection was refused"), ("zh", "连接被拒绝")])
def test_refused_connection_named(bundle, closed_port, capsys, language, reason, single_request):
    portal = f"http://127.0.0.1:{closed_port}"
    options = ["--single-request"] if single_request else []

    code = main(["--lang", language, "upload", str(bundle), "--portal", portal, "--token", "t", *options])

    error = capsys.readouterr().err
    assert code == EXIT_REMOTE
    assert "error[portal_unreachable]" in error
    assert reason in error
    assert "ConnectionError" not in error


def test_silent_portal_times_out(bundle, capsys):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        portal = "http://127.0.0.1:{}".format(listener.getsockname()[1])

        code = main(["--lang", "en", "upload", str(bundle), "--portal", portal, "--token", "t", "--timeout", "0.2"])

    error = capsys.readouterr().err
    assert code == EXIT_REMOTE
    assert "the connection timed out" in error


def test_unresolved_host_named():
    # The chain that requests raises for a host name that does not resolve, built without asking a resolver.
    lookup = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    wrapped = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", lookup))

    assert connection_failure(wrapped) == "the host name could not be resolved"
