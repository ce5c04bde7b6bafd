"""The service under restarts (issue 8, item 1; SPEC §9, §10): SIGTERM while many clients write.

The server is a real `pointsledger serve` process on 127.0.0.1 port 0 (the port is read
from its JSON "serving" log line). SIGTERM must lose no unary write: a call in flight
when the signal arrives is answered OK and is in the journal; a call that arrives after
the drain began is refused with UNAVAILABLE (which retry policies retry) and is not in
the journal. CANCELLED, which leaves the caller not knowing, is never an answer.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc

import pointsledger
from pointsledger import Ledger
from pointsledger.v1 import ledger_pb2 as pb, ledger_pb2_grpc as pb_grpc
from support import T_2026_03_15

T = T_2026_03_15  # 2026-03-15T00:00:00Z
START_TIMEOUT_S = 60
WRITERS = 64


def start_serve(data_path):
    """`python -m pointsledger serve` on port 0; (process, port, log lines)."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(pointsledger.__file__)))
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [path for path in [environment.get("PYTHONPATH")] if path])
    process = subprocess.Popen(
        [sys.executable, "-m", "pointsledger", "serve", "--data", str(data_path), "--address", "127.0.0.1:0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=environment)
    log, found = [], threading.Event()
    port = []

    def read_log():
        for line in process.stderr:
            log.append(line)
            if '"serving"' in line:
                port.append(json.loads(line)["port"])
                found.set()
        found.set()

    threading.Thread(target=read_log, daemon=True).start()
    assert found.wait(START_TIMEOUT_S) and port, "the server did not start:\n" + "".join(log)
    return process, port[0], log


def test_sigterm_during_64_concurrent_writers_loses_no_acknowledged_write(tmp_path):
    data = tmp_path / "ledger"
    process, port, log = start_serve(data)
    answers = {}  # order id -> status code name (or "OK")
    lock = threading.Lock()
    go = threading.Barrier(WRITERS + 1)
    stop_sending = threading.Event()

    def writer(number):
        # One channel per writer, like 64 separate clients; raw stubs so the status code is seen as is.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.LedgerStub(channel)
            go.wait()
            sent = 0
            while not stop_sending.is_set() or sent == 0:
                order_id = f"w{number:02d}-{sent:05d}"
                try:
                    stub.RecordPurchase(pb.RecordPurchaseRequest(
                        order_id=order_id, member_id=f"m-{number % 16}", amount_minor=1_000,
                        category="grocery", time_s=T + sent), timeout=60)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                with lock:
                    answers[order_id] = code
                sent += 1
                if code != "OK":
                    return  # the server is going away: this client stops as a real one would

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    go.wait()
    time.sleep(1.0)  # let the writers build a queue of calls in flight
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0
    stop_sending.set()
    for thread in threads:
        thread.join(timeout=90)
        assert not thread.is_alive()

    codes = {}
    for code in answers.values():
        codes[code] = codes.get(code, 0) + 1
    # Every call is answered OK or refused UNAVAILABLE; nothing else (CANCELLED least of all).
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes.get("OK", 0) > WRITERS  # every writer got at least one purchase through
    with Ledger(data) as ledger:
        journal = {entry.ref_id for entry in ledger.journal(limit=100_000)}
        assert ledger.verify().ok
    acknowledged = {order_id for order_id, code in answers.items() if code == "OK"}
    refused = {order_id for order_id, code in answers.items() if code == "UNAVAILABLE"}
    assert acknowledged <= journal  # every OK is committed
    assert not refused & journal  # every UNAVAILABLE wrote nothing
    assert journal == acknowledged  # and nothing else reached the journal
    events = [json.loads(line).get("event") for line in log if line.startswith("{")]
    assert [event for event in events if event in ("stopping", "stopped", "store closed")] == [
        "stopping", "stopped", "store closed"]
