CHUNK = 64 * 1024 * 1024


def test_allocate_until_killed():
    blocks = []
    for i in range(1024):  # 1024 x 64 MiB = 64 GiB
        blocks.append(b"\x01" * CHUNK)  # filled, so the pages are really used
        print(f"allocated {(i + 1) * 64} MiB", flush=True)
    raise AssertionError("allocated 64 GiB without being stopped by a memory limit")
