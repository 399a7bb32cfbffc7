import configparser
import os
from pathlib import Path

from app import read_env_file

ROOT = Path(__file__).resolve().parent.parent


def test_gitkeep_only_folders_exist():
    for folder in ["assets", "var/spool/incoming"]:
        assert (ROOT / folder).is_dir(), folder
        assert [p.name for p in (ROOT / folder).iterdir()] == [".gitkeep"]


def test_coveragerc_is_uploaded():
    config = configparser.ConfigParser()
    assert config.read(ROOT / ".coveragerc") == [str(ROOT / ".coveragerc")]
    assert config["run"]["source"] == "app"


def test_env_templates_are_uploaded():
    assert read_env_file(ROOT / ".env.example")["API_TOKEN"] == ""
    assert read_env_file(ROOT / ".env.sample")["DATABASE_URL"] == "sqlite:///dev.db"


def test_env_secrets_are_not_uploaded():
    assert not (ROOT / ".env").exists()
    assert not (ROOT / ".env.local").exists()
    # Nor is their content anywhere else.
    secrets = [b"fake-token", b"fake-password"]
    leaked = [
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.is_file()
        and p.suffix not in (".py", ".pyc")
        and any(s in p.read_bytes() for s in secrets)
    ]
    assert leaked == []


def test_empty_folder_exists_and_is_writable():
    output = ROOT / "output"
    assert output.is_dir(), "the empty output/ folder was not uploaded"
    assert list(output.iterdir()) == []
    (output / "report.txt").write_text("ok\n")
    assert os.access(output, os.W_OK)


def test_var_spool_is_writable():
    incoming = ROOT / "var" / "spool" / "incoming"
    message = incoming / "job-1.msg"
    message.write_text("hello")
    assert message.read_text() == "hello"
    message.unlink()
