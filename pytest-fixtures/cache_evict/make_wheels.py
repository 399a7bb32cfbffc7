"""Builds first/wheels/padfirst-1.0-py3-none-any.whl and second/wheels/padsecond-1.0-py3-none-any.whl
with the standard library only.

Each package holds `payload.bin`, 1 MiB of zeros (a few KiB in the wheel, 1 MiB once installed),
so that an install's size, and with it the dependency cache's size caps, are known in advance.
The wheels are committed; `python3 make_wheels.py` rebuilds them byte for byte (fixed timestamps,
fixed order).
"""

import base64
import hashlib
import os
import zipfile

PAYLOAD = bytes(1 << 20)
HERE = os.path.dirname(os.path.abspath(__file__))


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(project, name, version="1.0"):
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'"""{name}: 1 MiB of zeros."""\n\nNAME = "{name}"\n'.encode(),
        f"{name}/payload.bin": PAYLOAD,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: make_wheels.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/top_level.txt": f"{name}\n".encode(),
    }
    entries = list(files.items())
    record = "\n".join([record_line(n, d) for n, d in entries] + [f"{dist_info}/RECORD,,"]) + "\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    out = os.path.join(HERE, project, "wheels", f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as whl:
        for entry, data in entries:
            info = zipfile.ZipInfo(entry, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    print(out)


if __name__ == "__main__":
    build("first", "padfirst")
    build("second", "padsecond")
