"""An idle loop in a process that starts as root, becomes another user and group, and then
sets its dumpable flag as asked (prctl(PR_SET_DUMPABLE) through ctypes): the targets of the
permission tests. Everything it needs is imported before it gives up root (the interpreter's
own files may be where that user cannot read).

usage: drop_privileges.py TRUTH.json UID GID DUMPABLE(0|1)

The truth: the ids and the dumpable flag the process has, as the kernel reports them to it,
and its loop thread's native id."""

import asyncio
import ctypes
import os
import sys
import threading

import truth

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def main():
    uid, gid, dumpable = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    libc = ctypes.CDLL(None, use_errno=True)
    loop = truth.new_loop()
    asyncio.set_event_loop(loop)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if libc.prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")

    def record():
        truth.write_truth({
            "uids": list(os.getresuid()),
            "gids": list(os.getresgid()),
            "dumpable": libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
            "thread_native_id": threading.get_native_id(),
        })

    truth.call_soon_after_poll(loop, record)
    loop.run_forever()


if __name__ == "__main__":
    main()
