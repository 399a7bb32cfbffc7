import time


def test_sleep_forever():
    print("going to sleep", flush=True)
    time.sleep(10**9)
