"""An asyncio program that replaces itself with another program (exec) after EXEC_AFTER
seconds, as some process managers and re-exec'ing servers do.

    execs.py TRUTH.json
"""

import asyncio
import os
import sys

import truth

EXEC_AFTER = 1.5


async def main():
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.2)
    truth.write_truth({"exec_at": loop.time() + EXEC_AFTER - 0.2})
    await asyncio.sleep(EXEC_AFTER - 0.2)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)"])


asyncio.run(main())
