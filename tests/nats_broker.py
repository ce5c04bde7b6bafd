"""A real nats-server with JetStream for the tests: loopback, a free port, a temporary store directory.

Started and stopped by the tests themselves (no mock of the broker); `.ci/run` installs the
Debian package when it is missing. `restart()` stops the server and starts it again on the
same port and store, as an operator's restart would. `jetstream=False` starts a server
that answers connections but no JetStream request (as one still recovering its streams).
"""

import os
import shutil
import socket
import subprocess
import time


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    def __init__(self, directory, jetstream=True):
        self.directory = os.fspath(directory)
        self.jetstream = jetstream
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process = None
        self.log = None

    def start(self):
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.log = open(os.path.join(self.directory, "nats-server.log"), "ab")
        self.process = subprocess.Popen(
            [binary] + (["-js", "-sd", os.path.join(self.directory, "jetstream")] if self.jetstream else [])
            + ["-a", "127.0.0.1", "-p", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                    if connection.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start in 20 s")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def restart(self):
        self.stop()
        self.start()
