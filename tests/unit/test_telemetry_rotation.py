"""The telemetry file rotates by size: no event lost or split, files bounded, threads safe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aarm_pdp.cli import _parser, config_from_args
from aarm_pdp.config import Config, ConfigError, TelemetryConfig
from aarm_pdp.observability.metrics import Metrics
from aarm_pdp.observability.telemetry import RotatingJsonl, TelemetryExporter


def files(path: Path) -> list[Path]:
    """The live file and its rotations, oldest first."""
    rotated = sorted(
        path.parent.glob(f"{path.name}.*"), key=lambda p: int(p.suffix[1:]), reverse=True
    )
    return [*rotated, *([path] if path.exists() else [])]


def lines_in(f: Path) -> list[dict[str, object]]:
    """The events of one file, which ends with a whole line."""
    data = f.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{f.name} ends inside a line"
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def read_lines(path: Path) -> list[dict[str, object]]:
    """Every event in the live file and its rotations, oldest first."""
    return [event for f in files(path) for event in lines_in(f)]


@pytest.fixture
def sinks() -> Iterator[list[RotatingJsonl]]:
    made: list[RotatingJsonl] = []
    yield made
    for sink in made:
        sink.close()


def line(i: int, pad: int = 40) -> bytes:
    return orjson.dumps({"n": i, "pad": "x" * pad}) + b"\n"


def test_rotates_before_the_limit_and_keeps_n_files(
    tmp_path: Path, sinks: list[RotatingJsonl]
) -> None:
    path = tmp_path / "t.jsonl"
    sink = RotatingJsonl(path, max_bytes=1000, keep=3)
    sinks.append(sink)
    written = [line(i) for i in range(200)]  # 58 bytes each: 17 per file
    for i in range(0, 200, 7):
        sink.write_lines(written[i : i + 7])
    sink.close()
    present = files(path)
    assert [p.name for p in present] == ["t.jsonl.3", "t.jsonl.2", "t.jsonl.1", "t.jsonl"]
    assert all(p.stat().st_size <= 1000 for p in present)
    assert all(p.stat().st_size > 1000 - 58 for p in present[:-1])  # full before rotating
    events = read_lines(path)
    assert [e["n"] for e in events] == list(range(200 - len(events), 200))  # the newest, in order
    total = sum(len(x) for x in written)
    assert total // 1000 <= sink.rotations <= total // (1000 - 59)


def test_nothing_lost_with_enough_files(tmp_path: Path, sinks: list[RotatingJsonl]) -> None:
    path = tmp_path / "t.jsonl"
    sink = RotatingJsonl(path, max_bytes=500, keep=1000)
    sinks.append(sink)
    sink.write_lines([line(i) for i in range(300)])  # one batch, rotated between lines
    assert [e["n"] for e in read_lines(path)] == list(range(300))
    assert all(p.stat().st_size <= 500 for p in files(path))


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(
    tmp_path: Path, sinks: list[RotatingJsonl]
) -> None:
    path = tmp_path / "t.jsonl"
    sink = RotatingJsonl(path, max_bytes=100, keep=5)
    sinks.append(sink)
    sink.write_lines([line(0), line(1, pad=500), line(2)])
    assert [len(lines_in(p)) for p in files(path)] == [1, 1, 1]
    assert [e["n"] for e in read_lines(path)] == [0, 1, 2]


def test_keep_zero_keeps_only_the_live_file(tmp_path: Path, sinks: list[RotatingJsonl]) -> None:
    path = tmp_path / "t.jsonl"
    sink = RotatingJsonl(path, max_bytes=200, keep=0)
    sinks.append(sink)
    sink.write_lines([line(i) for i in range(20)])
    assert files(path) == [path]
    assert path.stat().st_size <= 200


def test_an_existing_file_counts_and_a_moved_one_is_reopened(
    tmp_path: Path, sinks: list[RotatingJsonl]
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(line(-1) * 16)  # 928 bytes from an earlier run
    sink = RotatingJsonl(path, max_bytes=1000, keep=2)
    sinks.append(sink)
    sink.write_lines([line(0), line(1)])
    assert [p.name for p in files(path)] == ["t.jsonl.1", "t.jsonl"]
    assert [e["n"] for e in read_lines(path)] == [-1] * 16 + [0, 1]
    path.rename(tmp_path / "elsewhere.jsonl")  # logrotate, or an operator
    sink.write_lines([line(2)])
    assert path.read_bytes() == line(2)


def test_concurrent_writers_lose_and_split_nothing(
    tmp_path: Path, sinks: list[RotatingJsonl]
) -> None:
    path = tmp_path / "t.jsonl"
    sink = RotatingJsonl(path, max_bytes=4096, keep=10_000)
    sinks.append(sink)
    threads, per_thread, batch = 8, 400, 5
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        start.wait()
        for i in range(0, per_thread, batch):
            sink.write_lines([line(t * per_thread + j) for j in range(i, i + batch)])

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    events = read_lines(path)  # parses every line: none interleaved or cut
    assert sorted(e["n"] for e in events) == list(range(threads * per_thread))
    assert all(p.stat().st_size <= 4096 for p in files(path))
    assert sink.rotations == len(files(path)) - 1 > 10
    # Each writer's batches stay in its order.
    for t in range(threads):
        mine = [e["n"] for e in events if t * per_thread <= e["n"] < (t + 1) * per_thread]  # type: ignore[operator]
        assert mine == sorted(mine)


def test_concurrent_writers_with_few_files_stay_bounded(
    tmp_path: Path, sinks: list[RotatingJsonl]
) -> None:
    path = tmp_path / "t.jsonl"
    sink = RotatingJsonl(path, max_bytes=2048, keep=2)
    sinks.append(sink)
    workers = [
        threading.Thread(target=lambda: [sink.write_lines([line(i)]) for i in range(300)])
        for _ in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    present = files(path)
    assert len(present) == 3 and all(p.stat().st_size <= 2048 for p in present)
    read_lines(path)  # whole lines only


async def test_the_exporter_rotates_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "var" / "telemetry.jsonl"
    metrics = Metrics()
    exporter = TelemetryExporter(metrics, file=path, max_bytes=4096, keep=100)
    for i in range(600):
        exporter.emit({"class_uid": 6003, "n": i, "severity_id": 1})
    await exporter.aclose()
    assert [e["n"] for e in read_lines(path)] == list(range(600))
    rotations = metrics.registry.get_sample_value("aarm_telemetry_file_rotations_total")
    assert rotations == len(files(path)) - 1 > 0
    assert all(p.stat().st_size <= 4096 for p in files(path))


def test_config_flags_and_validation(tmp_path: Path) -> None:
    args = _parser().parse_args(
        ["serve", "--telemetry-max-bytes", "1048576", "--telemetry-keep", "2"]
    )
    tc = config_from_args(args).telemetry
    assert (tc.max_bytes, tc.keep) == (1 << 20, 2)
    assert (TelemetryConfig().max_bytes, TelemetryConfig().keep) == (64 << 20, 5)
    with pytest.raises(ConfigError, match=r"telemetry\.max_bytes"):
        replace(Config(), telemetry=TelemetryConfig(max_bytes=100)).validate()
    with pytest.raises(ConfigError, match=r"telemetry\.keep"):
        replace(Config(), telemetry=TelemetryConfig(keep=-1)).validate()
