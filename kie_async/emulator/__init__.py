"""A local Kie.ai for tests, benchmarks and the offline demo: same paths, envelopes, codes and quirks.

>>> async with KieEmulator(EmulatorConfig(generation_seconds=0.2)) as emu:   # doctest: +SKIP
...     async with KieSession(emu.settings()) as kie:
...         ...
"""

from kie_async.emulator.config import DEFAULT_API_KEY, CostFn, EmulatorConfig, InputChecker
from kie_async.emulator.faults import FaultControl, FaultEndpoint, FaultKind, FaultRule
from kie_async.emulator.policy import basic_input_checker, price_table_cost, schema_input_checker
from kie_async.emulator.server import KieEmulator
from kie_async.emulator.state import RecordInfo
from kie_async.emulator.stats import EmulatorStats

__all__ = [
    "DEFAULT_API_KEY",
    "CostFn",
    "EmulatorConfig",
    "EmulatorStats",
    "FaultControl",
    "FaultEndpoint",
    "FaultKind",
    "FaultRule",
    "InputChecker",
    "KieEmulator",
    "RecordInfo",
    "basic_input_checker",
    "price_table_cost",
    "schema_input_checker",
]
