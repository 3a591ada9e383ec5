"""A Python program with no event loop: the main thread and one worker sleep."""

import threading
import time

import truth


def main():
    t = threading.Thread(target=lambda: time.sleep(3600), name="worker", daemon=True)
    t.start()
    truth.write_truth({"threads": ["MainThread", "worker"]})
    time.sleep(3600)


if __name__ == "__main__":
    main()
