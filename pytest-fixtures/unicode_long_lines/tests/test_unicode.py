import sys


def test_unicode_and_long_lines(capsys):
    with capsys.disabled():
        print("unicode: café naïve über ✓ Ωμέγα")
        print("emoji: 😀 🚀 🧪 👩‍💻")
        print("cjk: 你好，世界 こんにちは 안녕하세요")
        print("long:" + "x" * (100_000 - len("long:")))
        sys.stdout.flush()
        sys.stdout.buffer.write(b"invalid utf-8: \xff\xfe \xc3\x28 \xe2\x82 end\n")
        sys.stdout.buffer.flush()
        print("after invalid bytes")
        sys.stdout.flush()
