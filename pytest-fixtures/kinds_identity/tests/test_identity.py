import getpass
import locale
import os
import pwd
import sys
import time
import uuid
from pathlib import Path


def test_user_name_is_consistent(capsys):
    name = getpass.getuser()
    entry = pwd.getpwuid(os.getuid())
    assert name
    assert entry.pw_name == name
    assert os.environ["USER"] == name
    assert os.environ["LOGNAME"] == name
    assert entry.pw_uid == os.getuid()
    with capsys.disabled():
        print(f"\nIDENTITY user={name} uid={os.getuid()} gid={os.getgid()} home={os.environ['HOME']}")


def test_home_exists_and_is_writable():
    home = Path(os.environ["HOME"])
    assert home.is_absolute() and home.is_dir()
    assert Path.home() == home
    assert os.path.expanduser("~") == str(home)
    probe = home / ".config" / "app" / "settings.ini"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("[app]\nname = Zoë\n", encoding="utf-8")
    assert probe.read_text(encoding="utf-8").endswith("Zoë\n")


def test_tmp_path_is_writable(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\x00\xff" * 1024)
    assert (tmp_path / "data.bin").stat().st_size == 2048


def test_locale_is_utf8():
    assert os.environ["LANG"] == "C.UTF-8"
    assert os.environ["LC_ALL"] == "C.UTF-8"
    assert locale.getpreferredencoding(False).lower().replace("-", "") == "utf8"
    assert sys.stdout.encoding.lower().replace("-", "") == "utf8"
    assert sys.getfilesystemencoding() == "utf-8"


def test_timezone_is_utc():
    assert os.environ["TZ"] == "UTC"
    assert time.strftime("%Z", time.localtime(0)) == "UTC"
    assert time.localtime(0).tm_hour == 0


def test_ci_variables(capsys):
    assert os.environ["CI"] == "true"
    assert os.environ["PYTHONUNBUFFERED"] == "1"
    job_id = os.environ["CI_JOB_ID"]
    assert str(uuid.UUID(job_id)) == job_id
    with capsys.disabled():
        print(f"\nCI_JOB_ID={job_id}")


def test_uid_is_not_root():
    assert os.getuid() != 0 and os.geteuid() != 0
