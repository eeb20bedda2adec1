"""`modbus:HOST[:PORT][,unit=N][,base=N][,capacity_kwh=F][,timeout=S]`: read a PV inverter and a
battery over Modbus TCP through their SunSpec models (pymodbus).

SunSpec: the device's holding registers begin, at `base` (default: the first of 40000, 0, 50000
that holds it), with the marker "SunS" (0x5375 0x6E53), followed by models, each an id, a length L
and L registers, up to the end model (id 0xFFFF). This source walks them and reads, at each poll:
- inverters, models 101, 102 and 103 (single, split and three phase, integer + scale factor):
  AC power `W` (offset 12) times 10^`W_SF` (offset 13), in W: `renewable_kw`. A small negative
  power (an inverter's own draw at night) reads as 0. Several inverters are summed;
- a battery, model 802 (battery base): `SoC` (%, offset 9, `SoC_SF` 54) of the nameplate energy
  `WHRtg` (Wh, offset 1, `WHRtg_SF` 51): `battery_soc_kwh`; and its power `W` (offset 45, `W_SF`
  61, W, > 0 discharging as the vendors who state a sign have it): `battery_kw`;
- or model 124 (basic storage), where there is no 802: `ChaState` (% of capacity, offset 6,
  `ChaState_SF` 20) times `capacity_kwh=` (the nameplate, which model 124 does not give). Model 124
  has no battery power: grid import is then computed without the battery's share (composite.py)
  unless another source measures it.
A point the device marks "not implemented" (0x8000, 0xFFFF) fails the poll. The models are found
again after a failed poll (the device may have been replaced). Each request waits at most
`timeout` seconds (default 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suanli.agent.meters.base import MeterError, Options, Sample, now
from suanli.errors import UserError

OPTIONS = ("unit", "base", "capacity_kwh", "timeout")
SUNS = [0x5375, 0x6E53]
BASES = (40000, 0, 50000)
INVERTERS = (101, 102, 103)
END = 0xFFFF
MAX_MODELS = 64


@dataclass(frozen=True)
class ModbusConfig:
    host: str
    port: int = 502
    unit: int = 1
    base: int | None = None
    capacity_kwh: float | None = None
    timeout_s: float = 3.0

    def open(self) -> ModbusSource:
        return ModbusSource(self)


def parse(target: str, opts: Options) -> ModbusConfig:
    host, port = target, "502"
    if target.startswith("["):                                    # [::1]:502
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "502"
    elif target.count(":") == 1:
        host, port = target.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--meter {opts.spec!r}: modbus needs HOST[:PORT], e.g. modbus:10.0.0.5:502")
    unit = opts.integer("unit", 1, 0, 247)
    base = opts.integer("base", -1, 0, 65535)
    capacity = opts.number("capacity_kwh", None, 1e-3, 1e7)
    timeout = opts.number("timeout", 3.0, 0.1, 60.0)
    opts.done(OPTIONS)
    return ModbusConfig(host, int(port), unit, None if base == -1 else base, capacity, timeout)


def _int16(v: int) -> int:
    return v - 0x10000 if v >= 0x8000 else v


def _scaled(value: int, sf: int, point: str, signed: bool) -> float:
    """A SunSpec point times 10^its scale factor; "not implemented" fails the poll."""
    if (signed and value == 0x8000) or (not signed and value == 0xFFFF):
        raise MeterError(f"{point}: not implemented by the device")
    if sf == 0x8000:
        raise MeterError(f"{point}_SF: not implemented by the device")
    sf = _int16(sf)
    if not -10 <= sf <= 10:
        raise MeterError(f"{point}_SF: {sf} is not a scale factor")
    return (_int16(value) if signed else value) * 10.0 ** sf


@dataclass
class Models:
    base: int
    found: dict[int, list[tuple[int, int]]] = field(default_factory=dict)   # id -> [(data address, length)]


class ModbusSource:
    replay = False
    measures = frozenset({"renewable_kw", "battery_soc_kwh", "battery_kw"})

    def __init__(self, config: ModbusConfig):
        from pymodbus.client import ModbusTcpClient
        self.name = f"modbus:{config.host}:{config.port}"
        self.config = config
        self.client = ModbusTcpClient(config.host, port=config.port, timeout=config.timeout_s, retries=0)
        self.models: Models | None = None

    def _read(self, address: int, count: int) -> list[int]:
        from pymodbus.exceptions import ModbusException
        try:
            if not self.client.connected and not self.client.connect():
                raise MeterError(f"cannot connect to {self.config.host}:{self.config.port}")
            r = self.client.read_holding_registers(address, count=count, device_id=self.config.unit)
        except ModbusException as e:
            self.client.close()
            raise MeterError(f"reading {count} register(s) at {address}: {e}") from None
        if r.isError():
            raise MeterError(f"reading {count} register(s) at {address}: the device answers "
                             f"exception {getattr(r, 'exception_code', '?')}")
        if len(r.registers) < count:
            raise MeterError(f"reading {count} register(s) at {address}: {len(r.registers)} came back")
        return list(r.registers[:count])

    def discover(self) -> Models:
        bases = (self.config.base,) if self.config.base is not None else BASES
        for base in bases:
            try:
                if self._read(base, 2) == SUNS:
                    break
            except MeterError as e:
                if "cannot connect" in str(e):
                    raise
        else:
            raise MeterError(f"no SunSpec marker (SunS) at unit {self.config.unit}, register "
                             f"{' or '.join(map(str, bases))}")
        models = Models(base)
        addr = base + 2
        for _ in range(MAX_MODELS):
            mid, length = self._read(addr, 2)
            if mid == END:
                break
            models.found.setdefault(mid, []).append((addr + 2, length))
            addr += 2 + length
            if addr + 2 > 0x10000:
                raise MeterError("the SunSpec models run past the last register, with no end model")
        else:
            raise MeterError(f"more than {MAX_MODELS} SunSpec models, with no end model")
        if not any(m in models.found for m in (*INVERTERS, 124, 802)):
            raise MeterError(f"no SunSpec inverter (101-103) or battery (124, 802) model at unit "
                             f"{self.config.unit} (models: {', '.join(map(str, models.found)) or 'none'})")
        return models

    def _block(self, addr: int, length: int, need: int, mid: int) -> list[int]:
        if length < need:
            raise MeterError(f"model {mid} at register {addr - 2} is {length} registers long, under {need}")
        return self._read(addr, need)

    def poll(self) -> list[Sample]:
        try:
            if self.models is None:
                self.models = self.discover()
            return [self._measure(self.models)]
        except MeterError:
            self.models = None                   # found again at the next poll
            raise

    def _measure(self, models: Models) -> Sample:
        kw: dict[str, float] = {}
        for mid in INVERTERS:
            for addr, length in models.found.get(mid, []):
                r = self._block(addr, length, 14, mid)
                w = _scaled(r[12], r[13], f"model {mid} W", signed=True)
                kw["renewable_kw"] = kw.get("renewable_kw", 0.0) + max(0.0, w) / 1000.0
        if 802 in models.found:
            for addr, length in models.found[802]:
                r = self._block(addr, length, 62, 802)
                wh = _scaled(r[1], r[51], "model 802 WHRtg", signed=False)
                soc = _scaled(r[9], r[54], "model 802 SoC", signed=False)
                if not 0 <= soc <= 100:
                    raise MeterError(f"model 802 SoC: {soc} % is not a state of charge")
                kw["battery_soc_kwh"] = kw.get("battery_soc_kwh", 0.0) + soc / 100.0 * wh / 1000.0
                kw["battery_kw"] = kw.get("battery_kw", 0.0) + _scaled(r[45], r[61], "model 802 W",
                                                                       signed=True) / 1000.0
        elif 124 in models.found:
            if self.config.capacity_kwh is None:
                raise MeterError("model 124 gives the state of charge in % of a capacity it does not "
                                 "state: give capacity_kwh=")
            for addr, length in models.found[124]:
                r = self._block(addr, length, 24, 124)
                pct = _scaled(r[6], r[20], "model 124 ChaState", signed=False)
                if not 0 <= pct <= 100:
                    raise MeterError(f"model 124 ChaState: {pct} % is not a state of charge")
                kw["battery_soc_kwh"] = kw.get("battery_soc_kwh", 0.0) + pct / 100.0 * self.config.capacity_kwh
        return Sample(at=now(), **kw)

    def close(self) -> None:
        self.client.close()
