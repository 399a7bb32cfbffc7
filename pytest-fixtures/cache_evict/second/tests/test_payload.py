from pathlib import Path


def test_the_payload_is_installed():
    import padsecond

    assert Path(padsecond.__file__).with_name("payload.bin").stat().st_size == 1 << 20
