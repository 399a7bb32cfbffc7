# The install step's driver, mounted read-only with ci's other files at /opt/ci/plugins:
#
#   python3 /opt/ci/plugins/ci_install.py INSTALLER [PIP INSTALL ARGUMENTS...]
#
# It installs into a virtual environment at $PYTHONUSERBASE (/workspace/deps, the job's deps
# folder or its dependency cache volume) that sees the image's own packages
# (--system-site-packages), so that `python3 -m pytest`, the installed packages and their console
# scripts (/workspace/deps/bin is first on PATH) work in the test steps.
#
# INSTALLER is `uv`, `pip` or `auto`. `uv` and `auto` use uv (`uv pip install`) when the image has
# it, and pip otherwise; when uv cannot install the requirements (it refuses some things pip
# accepts), pip installs them instead. Every choice is said on the first lines of the log.
import glob
import os
import shutil
import subprocess
import sys

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def say(text):
    print(f"ci-install: {text}", flush=True)


def version(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "?"
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def pip_version(python, target):
    """What `python -m pip --version` would say, read from pip's metadata (the venv's own pip
    first, then the image's), without starting pip: importing pip takes longer than many
    installs. Asks pip itself when the metadata cannot be read."""
    own = glob.glob(os.path.join(target, "lib", "python*", "site-packages"))
    try:
        import importlib.metadata  # only pip needs it: uv's jobs do not pay for the import

        found = importlib.metadata.distributions(name="pip", path=own + sys.path)
        pip = next(iter(found), None)
        if pip is not None:
            return f"pip {pip.version} from {pip.locate_file('pip')}"
    except Exception:  # noqa: BLE001 - an unreadable metadata folder: ask pip
        pass
    return version([python or sys.executable, "-m", "pip", "--version"])


def make_venv(target):
    python = os.path.join(target, "bin", "python")
    if os.path.exists(python):
        return python
    # `python3 -m venv --system-site-packages --without-pip TARGET`, without starting another
    # Python for it.
    try:
        import venv

        venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(target)
    except Exception as error:  # noqa: BLE001 - no venv module, a read-only target, ...
        print(f"cannot create a virtual environment: {error}", file=sys.stderr, flush=True)
        return None
    return python if os.path.exists(python) else None


def with_pip(python, target, args):
    if python is None:
        # No venv module in the image: pip's user scheme installs to the same place.
        say("installing with " + pip_version(None, target) + " (--user)")
        command = [sys.executable, "-m", "pip", "install", "--user", *args]
    else:
        say("installing with " + pip_version(python, target))
        command = [python, "-m", "pip", "install", *args]
    return subprocess.run(command).returncode


def with_uv(uv, python, args):
    say(f"installing with {version([uv, '--version'])}")
    env = dict(os.environ)
    env.setdefault("UV_LINK_MODE", "copy")
    if os.path.exists(CA_BUNDLE):
        # The image's trust store, as pip uses it (a TLS-intercepting proxy keeps working).
        env.setdefault("SSL_CERT_FILE", CA_BUNDLE)
    cache = os.environ.get("PIP_CACHE_DIR")
    if cache:
        env.setdefault("UV_CACHE_DIR", os.path.join(cache, "uv"))
    else:
        env.setdefault("UV_NO_CACHE", "1")
    return subprocess.run([uv, "pip", "install", "--python", python, *args], env=env).returncode


def main(argv):
    if len(argv) < 1 or argv[0] not in ("auto", "pip", "uv"):
        print("usage: ci_install.py auto|pip|uv [PIP INSTALL ARGUMENTS...]", file=sys.stderr)
        return 2
    installer, args = argv[0], argv[1:]
    target = os.environ.get("PYTHONUSERBASE", "/workspace/deps")
    python = make_venv(target)
    if python is None:
        say(f"cannot create a virtual environment at {target}: installing with pip --user")
    uv = shutil.which("uv")
    if installer == "pip" or python is None:
        return with_pip(python, target, args)
    if uv is None:
        if installer == "uv":
            say("uv is not in this image: installing with pip")
        return with_pip(python, target, args)
    code = with_uv(uv, python, args)
    if code == 0:
        return 0
    say(f"uv could not install these requirements (exit {code}): installing with pip instead")
    return with_pip(python, target, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
