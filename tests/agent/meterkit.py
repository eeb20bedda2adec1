"""Real servers for the meter tests (imported by name: tests/agent is on sys.path):
- `prometheus_exporter`: prometheus_client's own HTTP exporter on an ephemeral port, serving a registry the
  test fills (`dcgm_power` adds the per-GPU power gauge as DCGM exporter writes it);
- `text_server`: an http.server on an ephemeral port that answers what the test sets (a status, a
  body, a delay per chunk, or no answer at all), and records the requests it got;
- `sunspec_server`: pymodbus's own Modbus TCP server on an ephemeral port, serving holding
  registers that hold SunSpec models built by `sunspec_registers`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server

DCGM_POWER = "DCGM_FI_DEV_POWER_USAGE"


@contextmanager
def prometheus_exporter(registry: CollectorRegistry | None = None) -> Iterator[tuple[CollectorRegistry, str]]:
    """prometheus_client's HTTP server on 127.0.0.1, an ephemeral port, serving `registry` (a new
    one by default): yields (the registry, its /metrics URL); shut down after."""
    reg = registry if registry is not None else CollectorRegistry()
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield reg, f"http://127.0.0.1:{httpd.server_port}/metrics"
    finally:
        httpd.shutdown()
        httpd.server_close()


def dcgm_power(reg: CollectorRegistry, watts: list[float], labels: tuple[str, ...] = ("gpu",)) -> Gauge:
    """DCGM exporter's power gauge in `reg`, GPU i (its `gpu` label) at watts[i] W; with the
    labels ("gpu", "UUID", "Hostname") as DCGM exporter writes them: UUID GPU-i, Hostname node1."""
    g = Gauge(DCGM_POWER, "Power draw (in W).", list(labels), registry=reg)
    extra = {"UUID": lambda i: f"GPU-{i}", "Hostname": lambda i: "node1"}
    for i, w in enumerate(watts):
        g.labels(*(str(i) if name == "gpu" else extra[name](i) for name in labels)).set(w)
    return g


@dataclass
class Script:
    """What the text server answers; a test changes it while the server runs."""
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; version=0.0.4"
    drip_s: float = 0.0                 # seconds between the body's bytes (a slow server)
    hang: threading.Event | None = None  # set: answer; unset: hold the request (a hung server)
    answer: object = None               # (request body as JSON) -> (status, body): overrides status/body
    received: list = field(default_factory=list)


@contextmanager
def text_server(script: Script) -> Iterator[str]:
    """Yields the server's base URL (http://127.0.0.1:PORT)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self, payload):
            if script.hang is not None:
                script.hang.wait(60)
            status, body = script.status, script.body
            if script.answer is not None:
                status, body = script.answer(payload)
                body = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if script.answer else script.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if script.drip_s:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(script.drip_s)
                else:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_GET(self):
            script.received.append(("GET", self.path, None))
            self._answer(None)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            payload = json.loads(self.rfile.read(n) or b"null")
            script.received.append(("POST", self.path, payload, self.headers.get("Authorization")))
            self._answer(payload)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        if script.hang is not None:
            script.hang.set()
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------------------------ SunSpec
def u16(v: int) -> int:
    """A signed 16-bit value as the register holds it."""
    return v & 0xFFFF


def model(mid: int, length: int, points: dict[int, int]) -> list[int]:
    data = [0] * length
    for offset, value in points.items():
        data[offset] = u16(value)
    return [mid, length, *data]


def inverter(w: int, sf: int, mid: int = 103) -> list[int]:
    """SunSpec inverter model 101/102/103 (50 registers): W at offset 12, W_SF at 13."""
    return model(mid, 50, {12: w, 13: sf})


def battery_802(wh_rtg: int, wh_sf: int, soc: int, soc_sf: int, w: int, w_sf: int) -> list[int]:
    """SunSpec model 802 (62 registers): WHRtg 1, SoC 9, W 45, WHRtg_SF 51, SoC_SF 54, W_SF 61."""
    return model(802, 62, {1: wh_rtg, 9: soc, 45: w, 51: wh_sf, 54: soc_sf, 61: w_sf})


def storage_124(cha_state: int, sf: int) -> list[int]:
    """SunSpec model 124 (24 registers): ChaState at offset 6, ChaState_SF at 20."""
    return model(124, 24, {6: cha_state, 20: sf})


def sunspec_registers(*models: list[int]) -> list[int]:
    """"SunS", the common model (1, 66 registers), the given models, the end model."""
    out = [0x5375, 0x6E53, *model(1, 66, {})]
    for m in models:
        out += m
    return out + [0xFFFF, 0]


@contextmanager
def sunspec_server(registers: list[int], base: int = 40000, unit: int = 1, port: int = 0) -> Iterator[int]:
    """pymodbus's Modbus TCP server on 127.0.0.1, an ephemeral port (or `port`; yielded), serving `registers`
    as holding registers from `base` for device `unit`; any other address is an exception answer."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    device = SimDevice(id=unit, simdata=[SimData(base, values=list(registers), datatype=DataType.REGISTERS)])
    loop = asyncio.new_event_loop()
    box: dict = {}
    ready = threading.Event()

    async def serve():
        box["server"] = ModbusTcpServer(device, address=("127.0.0.1", port))
        await box["server"].listen()
        ready.set()

    def run():
        loop.run_until_complete(serve())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10), "the Modbus server did not start"
    server = box["server"]
    port = server.transport.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
