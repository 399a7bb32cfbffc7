"""Builds the small local wheels of the installer_projects fixtures with the standard library
only, byte for byte the same on every run (fixed timestamps, fixed order): the wheels are
committed, and hashes.txt's `--hash` lines depend on their bytes.

    python3 make_wheels.py

- alpha 1.0 needs beta>=1.0 and has a console script, `alpha-version`;
- beta 1.0 and beta 1.1 (resolution picks one: the newest, or the one a constraint allows);
- greetkit 0.3.0 in same/wheels/ is a copy of kinds_console_scripts' wheel (not built here).

It prints each wheel's sha256 (hashes/requirements.txt pins alpha 1.0 and beta 1.1 with theirs).
"""

import base64
import hashlib
import os
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel(name, version, requires=(), scripts=None):
    """The bytes of a pure-Python wheel of package `name` (module `name`)."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    module = f'"""{name}, a tiny package of the installer fixtures."""\n\nVERSION = "{version}"\n'
    if scripts:
        module += '\n\ndef main():\n    print(f"{__name__} {VERSION}")\n    return 0\n'
    files = {
        f"{name}/__init__.py": module,
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: make_wheels.py\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/top_level.txt": f"{name}\n",
    }
    if scripts:
        files[f"{dist_info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{script} = {target}\n" for script, target in scripts.items()
        )
    entries = [(n, text.encode()) for n, text in files.items()]
    record = "\n".join([record_line(n, d) for n, d in entries] + [f"{dist_info}/RECORD,,"]) + "\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    return entries


def write(folder, filename, entries):
    out = os.path.join(HERE, folder, "wheels", filename)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as whl:
        for entry, data in entries:
            info = zipfile.ZipInfo(entry, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"{os.path.relpath(out, HERE)} sha256:{digest}")


ALPHA = ("alpha", "1.0", ["beta>=1.0"], {"alpha-version": "alpha:main"})
BETAS = [("beta", "1.0"), ("beta", "1.1")]

if __name__ == "__main__":
    for folder in ["same", "constraints", "hashes", "editable", "fallback"]:
        if folder != "editable":
            name, version, requires, scripts = ALPHA
            write(folder, f"{name}-{version}-py3-none-any.whl", wheel(name, version, requires, scripts))
        for name, version in BETAS:
            write(folder, f"{name}-{version}-py3-none-any.whl", wheel(name, version))
