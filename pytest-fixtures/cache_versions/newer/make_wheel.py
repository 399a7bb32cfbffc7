"""Builds newer/greetkit-0.4.0-py3-none-any.whl (0.3.0 plus Spanish) with the standard library only.

The wheel is committed; run `python3 newer/make_wheel.py` to rebuild it (the output is the same
byte for byte: fixed timestamps, fixed order).
"""

import base64
import hashlib
import os
import zipfile

NAME, VERSION = "greetkit", "0.4.0"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"

FILES = {
    "greetkit/__init__.py": '''"""Greetings in a few languages."""

GREETINGS = {"en": "Hello", "fr": "Bonjour", "de": "Hallo", "ja": "こんにちは", "es": "Hola"}


def greet(name, lang="en"):
    return f"{GREETINGS[lang]}, {name}!"
''',
    "greetkit/cli.py": '''import argparse

from greetkit import GREETINGS, greet


def main(argv=None):
    parser = argparse.ArgumentParser(prog="say-hello")
    parser.add_argument("name")
    parser.add_argument("--lang", default="en", choices=sorted(GREETINGS))
    args = parser.parse_args(argv)
    print(greet(args.name, args.lang))
    return 0
''',
    f"{DIST_INFO}/METADATA": f"""Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: Greetings in a few languages, with a say-hello command
Requires-Python: >=3.8
""",
    f"{DIST_INFO}/WHEEL": """Wheel-Version: 1.0
Generator: make_wheel.py
Root-Is-Purelib: true
Tag: py3-none-any
""",
    f"{DIST_INFO}/entry_points.txt": """[console_scripts]
say-hello = greetkit.cli:main
""",
    f"{DIST_INFO}/top_level.txt": "greetkit\n",
}


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{NAME}-{VERSION}-py3-none-any.whl")
    entries = [(name, text.encode("utf-8")) for name, text in FILES.items()]
    record = "\n".join([record_line(n, d) for n, d in entries] + [f"{DIST_INFO}/RECORD,,"]) + "\n"
    entries.append((f"{DIST_INFO}/RECORD", record.encode("utf-8")))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    print(out)


if __name__ == "__main__":
    main()
