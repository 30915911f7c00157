import stat

from agent.cli import main
from agent.errors import EXIT_OK, EXIT_USAGE
from certification.signing import load_private_key, load_public_key_file


def test_keygen_writes_both_files(tmp_path, capsys):
    path = tmp_path / "vendor.key"

    code = main(["keygen", "--out", str(path)])

    key_id = capsys.readouterr().out.strip()
    assert code == EXIT_OK
    assert load_private_key(path).key_id == key_id
    assert load_public_key_file(tmp_path / "vendor.key.pub").key_id == key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_rejects_existing_key(tmp_path, capsys):
    path = tmp_path / "vendor.key"
    path.write_text("old")

    code = main(["keygen", "--out", str(path)])

    assert code == EXIT_USAGE
    assert "key_file_exists" in capsys.readouterr().err
    assert path.read_text() == "old"
