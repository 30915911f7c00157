import stat

import pytest

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


def test_keygen_rejects_empty_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    code = main(["--lang", "en", "keygen", "--out", ""])

    assert code == EXIT_USAGE
    assert "error[option_empty]: --out is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["", "/"])
@pytest.mark.parametrize(("language", "expected"), [("en", "is a folder, not a key file"), ("zh", "是文件夹，不是密钥文件")])
def test_keygen_rejects_folder(tmp_path, capsys, suffix, language, expected):
    folder = tmp_path / "keys"
    folder.mkdir()

    code = main(["--lang", language, "keygen", "--out", f"{folder}{suffix}"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"error[key_path_is_folder]: --out {folder}{suffix} " in error
    assert expected in error
    assert str(folder / "vendor.key") in error
    assert "already exists" not in error
    assert list(folder.iterdir()) == []
