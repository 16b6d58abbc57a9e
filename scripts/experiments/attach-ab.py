#!/usr/bin/env python3
"""attach-ab: the throughput of two or more daemon builds through `pulsar attach`, side by
side in one run, beside a bare PTY.

Run by hand (nothing in the test suite uses it), from the repository's root, after
`cargo build --release -p pulsar-cli --bin pulsar` and with each build to compare copied
somewhere (a build's binary is overwritten by the next `cargo build`):

    python3 scripts/experiments/attach-ab.py lines 7 /tmp/base-standalone /tmp/new-standalone

A "build" may be a wrapper script that sets an environment variable for an experiment and
`exec`s the binary. Each daemon gets a directory of its own under /tmp (removed at the end).
Each round runs the producer straight in an 80x24 PTY, then through `pulsar attach` on each
daemon in turn (a session made for that run, ended after it), as `pulsar-bench attachpty`
does (the same producers and end mark; the reader here is Python, so absolute figures are a
little lower). Prints the medians, their share of the bare PTY's, and every run.
"""

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time

CLI = os.path.abspath("target/release/pulsar")
BYTES = 64 * 1024 * 1024
MARK = b"END-42-MARK"


def producer(mode):
    if mode == "endless":
        return f"head -c {BYTES} /dev/zero | tr '\\0' a"
    if mode == "lines":
        return f"yes {'a' * 63} | head -c {BYTES}"
    sys.exit(f"unknown mode {mode!r}: endless or lines")


def read_to(fd, mark):
    """Reads `fd` until `mark` has been seen; the bytes read."""
    tail, total = b"", 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return total
        if not chunk:
            return total
        total += len(chunk)
        tail += chunk
        if mark in tail:
            return total
        tail = tail[-len(mark):]


def timed(argv, env):
    """Bytes per second of `argv` in an 80x24 PTY, from the keystroke its "R" waits for to
    the end mark."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    read_to(fd, b"R")
    time.sleep(0.2)
    start = time.monotonic()
    os.write(fd, b"\n")
    total = read_to(fd, MARK)
    rate = total / (time.monotonic() - start)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(fd)
    return rate / 1e6


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    mode, runs, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    script = f"stty -echo; echo R; read go; {producer(mode)}; echo; echo END-$((6*7))-MARK; sleep 30"
    daemons = []
    for build in builds:
        home = tempfile.mkdtemp(prefix="attach-ab.")
        socket = os.path.join(home, "run", "pulsar.sock")
        env = dict(os.environ, HOME=home, PULSAR_LOG_LEVEL="warn")
        log = open(os.path.join(home, "daemon.log"), "a")
        process = subprocess.Popen(
            [build, "--socket", socket, "--database", os.path.join(home, "db.sqlite")],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        daemons.append((build, process, socket, env, home))
    try:
        for build, process, socket, env, _ in daemons:
            deadline = time.monotonic() + 10
            while subprocess.run([CLI, "--socket", socket, "status"], env=env,
                                 capture_output=True).returncode != 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"{build}: the daemon did not start")
                time.sleep(0.05)
        rates = {"bare PTY": []} | {build: [] for build in builds}
        for run in range(runs):
            rates["bare PTY"].append(timed(["/bin/sh", "-c", script], dict(os.environ)))
            for build, _, socket, env, _ in daemons:
                name = f"ab{run}"
                subprocess.run([CLI, "--socket", socket, "new", "-d", name, "--", "/bin/sh",
                                "-c", script], env=env, capture_output=True, check=True)
                rates[build].append(timed([CLI, "--socket", socket, "attach", name], env))
                subprocess.run([CLI, "--socket", socket, "kill", name], env=env,
                               capture_output=True)
        median = lambda values: sorted(values)[len(values) // 2]
        bare = median(rates["bare PTY"])
        for what, values in rates.items():
            print(f"{mode}, {what}: median {median(values):.1f} MB/s "
                  f"({100 * median(values) / bare:.0f} % of bare), runs "
                  f"{[round(value, 1) for value in values]}")
    finally:
        for _, process, socket, env, home in daemons:
            # Not SIGTERM: that leaves the sessions (and their keeper) running for the next
            # daemon. `shutdown` ends them and the keeper with them.
            subprocess.run([CLI, "--socket", socket, "shutdown"], env=env, capture_output=True)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
