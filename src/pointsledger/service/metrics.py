"""Prometheus metrics of the gRPC service.

Each server has its own registry (tests run several servers in one process),
served over HTTP only when a metrics port is given. Label children are cached
so that counting a call costs a dictionary look-up, not a registry walk.
"""

import prometheus_client

# Group sizes: from one lonely call to a full group; batch sizes up to the item limit.
GROUP_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_SIZE_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 1_000_000)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self._requests = prometheus_client.Counter(
            "pointsledger_requests", "RPCs answered, by method and status code",
            ("rpc", "code"), registry=self.registry,
        )
        self._rpc_seconds = prometheus_client.Histogram(
            "pointsledger_rpc_seconds", "Time from the call's arrival to its answer, by method",
            ("rpc",), buckets=SECONDS_BUCKETS, registry=self.registry,
        )
        self.commit_seconds = prometheus_client.Histogram(
            "pointsledger_commit_seconds", "Time of one commit by the writer (apply and sync)",
            ("kind",), buckets=SECONDS_BUCKETS, registry=self.registry,
        )
        self.group_size = prometheus_client.Histogram(
            "pointsledger_group_commit_size", "Unary writes sharing one commit",
            buckets=GROUP_SIZE_BUCKETS, registry=self.registry,
        )
        self.batch_size = prometheus_client.Histogram(
            "pointsledger_ingest_batch_size", "Purchases per IngestPurchases batch",
            buckets=BATCH_SIZE_BUCKETS, registry=self.registry,
        )
        # Entries/s is rate(pointsledger_journal_entries_total[1m]) in Prometheus.
        self.entries = prometheus_client.Counter(
            "pointsledger_journal_entries", "Journal entries written", registry=self.registry,
        )
        self.writes_queued = prometheus_client.Gauge(
            "pointsledger_writes_queued", "Write jobs waiting for the writer", registry=self.registry,
        )
        # Set to read the ledger's count at scrape time (server.create_server).
        self.categories = prometheus_client.Gauge(
            "pointsledger_categories",
            "Categories in the ledger's dictionary (limits.categories_max at most)", registry=self.registry,
        )
        # Read at scrape time from the servicer (see watch).
        self.ingest_streams = prometheus_client.Gauge(
            "pointsledger_ingest_streams", "IngestPurchases streams open", registry=self.registry,
        )
        self.ingest_bytes_in_flight = prometheus_client.Gauge(
            "pointsledger_ingest_bytes_in_flight", "Request bytes of stream batches read and not yet answered",
            registry=self.registry,
        )
        self.journal_followers = prometheus_client.Gauge(
            "pointsledger_journal_followers", "ReadJournal calls following new commits", registry=self.registry,
        )
        self.malformed_requests = prometheus_client.Counter(
            "pointsledger_malformed_requests", "Requests whose bytes were not a valid message, by method",
            ("rpc",), registry=self.registry,
        )
        self._request_children = {}
        self._seconds_children = {}
        self._commit_children = {}
        self._http_server = None

    def request(self, rpc, code, seconds):
        key = (rpc, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self._requests.labels(rpc, code)
        child.inc()
        timer = self._seconds_children.get(rpc)
        if timer is None:
            timer = self._seconds_children[rpc] = self._rpc_seconds.labels(rpc)
        timer.observe(seconds)

    def watch(self, servicer):
        """Read the servicer's gauges when scraped."""
        self.ingest_streams.set_function(lambda: servicer.ingest.streams)
        self.ingest_bytes_in_flight.set_function(lambda: servicer.ingest.bytes_in_flight)
        self.journal_followers.set_function(lambda: servicer.tail.followers)

    def malformed(self, rpc):
        self.malformed_requests.labels(rpc).inc()

    def commit(self, kind, seconds):
        child = self._commit_children.get(kind)
        if child is None:
            child = self._commit_children[kind] = self.commit_seconds.labels(kind)
        child.observe(seconds)

    def count(self, rpc, code):
        """How many `rpc` calls ended with `code` (for tests and logs)."""
        value = self.registry.get_sample_value("pointsledger_requests_total", {"rpc": rpc, "code": code})
        return int(value or 0)

    def serve(self, port, address="127.0.0.1"):
        """Serve /metrics over HTTP on port (0 picks one); return the port."""
        server, _thread = prometheus_client.start_http_server(port, addr=address, registry=self.registry)
        self._http_server = server
        return server.server_address[1]

    def close(self):
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
