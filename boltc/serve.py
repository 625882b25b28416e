"""``boltc serve MODEL``: a trained model behind HTTP, on starlette and uvicorn (``pip install 'boltc[serve]'``, with
uvicorn's httptools parser and uvloop event loop: a fifth more rows per second than h11 and asyncio's loop).

``POST /predict`` takes ``{"rows": [...], "top_k": K}`` and answers ``{"predictions": [[{"label": ..., "score":
...}, ...], ...]}``, one list per row, best first. Requests that arrive together are answered by one batch call
(``MicroBatcher``): a request waits at most ``max_wait_ms`` for others to join it, a batch holds at most
``max_batch`` rows, and requests that arrive while one batch is scored form the next, so throughput grows with load.
``GET /health``, ``GET /metadata`` and ``GET /metrics`` (Prometheus text) say how it is and what it serves. A bad
request gets a 4xx with a JSON error naming the field at fault; nothing a client sends stops the server.

A row is, for a model of one sparse input, a list of feature ids (each counts 1) or an object ``{"id": value}``; for
one dense input, a list of its values; for several inputs, an object keyed by input name holding one of those; for
a model with typed columns, an object keyed by column name (``boltc.Records``). Rows may add to the per-key state of
history inputs (``"update_history": true``) only when the server was started with ``--allow-history-updates``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import time
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from boltc import __version__
from boltc.data import Dataset, FeatureMatrix
from boltc.diagnostics import BoltError, UsageError
from boltc.tables import Records

if TYPE_CHECKING:
    from boltc.model import Model

DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_WAIT_MS = 2.0
MAX_ROWS_PER_REQUEST = 10_000
MAX_BODY_BYTES = 64 << 20
FLOAT32_MOST = float(np.finfo(np.float32).max)
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class RequestError(Exception):
    """A request the server cannot answer: its status, the field at fault and why."""

    def __init__(self, field_name: str, message: str, status: int = 400):
        super().__init__(message)
        self.field_name, self.message, self.status = field_name, message, status


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    sparse: bool | None = None  # None: sparse inference where the model has an LSH-sparse output
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    allow_history_updates: bool = False
    threads: int | None = None  # None: the model's


# -- rows: JSON -> the model's inputs --------------------------------------------------------------------------


class RowReader:
    """Checks a request's rows against the model's inputs and turns rows (of any number of requests) into the
    data one predict call takes."""

    def __init__(self, model: Model):
        self.plan = model.plan
        self.columns = model.reads_columns

    def rows(self, body: dict) -> list:
        rows = body.get("rows")
        if not isinstance(rows, list) or not rows:
            raise RequestError("rows", "expected a non-empty list of rows")
        if len(rows) > MAX_ROWS_PER_REQUEST:
            raise RequestError("rows", f"at most {MAX_ROWS_PER_REQUEST:,} rows a request, got {len(rows):,}", 413)
        if self.columns:
            for index, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise RequestError(f"rows[{index}]", "expected an object of column values")
            return rows
        return [self._row(index, row) for index, row in enumerate(rows)]

    def _row(self, index: int, row) -> tuple:
        """One row as a tuple of each input's (ids, values) or dense values."""
        inputs = self.plan.inputs
        if len(inputs) == 1:
            return (self._input(f"rows[{index}]", inputs[0], row),)
        if not isinstance(row, dict):
            raise RequestError(f"rows[{index}]", "expected an object keyed by input name (" +
                               ", ".join(i.name for i in inputs) + ")")
        unknown = [key for key in row if key not in {i.name for i in inputs}]
        if unknown:
            raise RequestError(f"rows[{index}].{unknown[0]}", "the model has no such input")
        missing = [i.name for i in inputs if i.name not in row]
        if missing:
            raise RequestError(f"rows[{index}].{missing[0]}", "missing input")
        return tuple(self._input(f"rows[{index}].{i.name}", i, row[i.name]) for i in inputs)

    @staticmethod
    def _input(where: str, model_input, value):
        if model_input.kind == "dense":
            if not isinstance(value, list) or len(value) != model_input.dim or \
                    not all(_is_number(v) for v in value):
                raise RequestError(where, f"expected a list of {model_input.dim} numbers (a dense input)")
            return np.asarray(value, dtype=np.float32)
        if isinstance(value, list):
            ids, values = value, None
        elif isinstance(value, dict):
            if not all(key.isascii() and key.isdigit() for key in value):
                raise RequestError(where, "expected feature ids as the object's keys")
            ids = [int(key) for key in value]
            values = list(value.values())
            if not all(_is_number(v) for v in values):
                raise RequestError(where, "expected a number for each feature id")
        else:
            raise RequestError(where, "expected a list of feature ids or an object {id: value}")
        if not all(type(i) is int for i in ids):
            raise RequestError(where, "expected feature ids as integers")
        outside = [i for i in ids if not 0 <= i < model_input.dim]  # before numpy: a JSON integer has no bound
        if outside:
            raise RequestError(where, f"feature id {outside[0]} is outside 0..{model_input.dim - 1}")
        ids_array = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids_array, kind="stable")
        ids_array = ids_array[order]
        if len(ids_array) > 1 and (np.diff(ids_array) == 0).any():
            repeated = int(ids_array[1:][np.diff(ids_array) == 0][0])
            raise RequestError(where, f"feature id {repeated} appears twice")
        values_array = None if values is None else np.asarray(values, dtype=np.float32)[order]
        return ids_array.astype(np.int32), values_array

    def data(self, rows: list):
        """Rows (read by ``rows``, of one or more requests) as what ``Model.predict`` takes."""
        if self.columns:
            return Records(rows, name="rows")
        features = []
        for index, model_input in enumerate(self.plan.inputs):
            parts = [row[index] for row in rows]
            if model_input.kind == "dense":
                features.append(FeatureMatrix(model_input.dim, dense=np.stack(parts)))
                continue
            lengths = np.fromiter((len(ids) for ids, _ in parts), dtype=np.int64, count=len(parts))
            indptr = np.zeros(len(parts) + 1, dtype=np.int64)
            np.cumsum(lengths, out=indptr[1:])
            indices = np.concatenate([ids for ids, _ in parts]) if indptr[-1] else np.zeros(0, np.int32)
            values = np.concatenate([np.ones(len(ids), np.float32) if values is None else values
                                     for ids, values in parts]) if indptr[-1] else np.zeros(0, np.float32)
            features.append(FeatureMatrix(model_input.dim, indptr=indptr, indices=indices.astype(np.int32),
                                          values=values.astype(np.float32)))
        return Dataset(None, len(rows), tuple(features), self.plan.target_dim, None, None)


async def _bounded_body(request) -> bytes:
    """The request's body, refused (413) as soon as it says or proves to be larger than MAX_BODY_BYTES."""
    too_large = RequestError("body", f"at most {MAX_BODY_BYTES >> 20} MB a request", 413)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_large
    parts, size = [], 0
    async for part in request.stream():  # a chunked body has no length to check first
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise too_large
        parts.append(part)
    return b"".join(parts)


def _json_object(body: bytes) -> dict:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise RequestError("body", "expected a JSON object")
    return parsed


def _request_options(body: dict, top_k_most: int, history_updates: bool) -> tuple[int, bool]:
    """A request's top_k and update_history, checked."""
    unknown = [key for key in body if key not in ("rows", "top_k", "update_history")]
    if unknown:
        raise RequestError(unknown[0], "unknown field (expected rows, top_k, update_history)")
    top_k = body.get("top_k", 1)
    if type(top_k) is not int or not 1 <= top_k <= top_k_most:
        raise RequestError("top_k", f"expected an integer from 1 to {top_k_most}")
    update = body.get("update_history", False)
    if not isinstance(update, bool):
        raise RequestError("update_history", "expected true or false")
    if update and not history_updates:
        raise RequestError("update_history", "this server does not add requests to history inputs (start it with "
                           "--allow-history-updates)", 403)
    return top_k, update


def _is_number(value) -> bool:
    """A JSON number a float32 holds (a larger one, even an integer of 400 digits, is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -FLOAT32_MOST <= value <= FLOAT32_MOST


# -- micro-batching ---------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    rows: list
    top_k: int
    update_history: bool
    done: asyncio.Future


class MicroBatcher:
    """Answers concurrent requests with one predict call. The first request waiting starts a batch; requests of the
    same ``top_k`` join it until it holds ``max_batch`` rows, ``max_wait`` seconds have passed, or no other request
    has arrived (waiting could not fill it). Requests of another ``top_k`` are set aside for the batches after it,
    in arrival order: sparse inference tops a row's candidates up to its ``top_k``, so a batch of mixed ones would
    answer a request differently than alone. Requests that add to history state are scored alone, in arrival
    order, since each one's rows change what the next sees: nothing that arrived after one is scored before it."""

    def __init__(self, model: Model, reader: RowReader, sparse: bool, max_batch: int, max_wait: float,
                 metrics: ServerMetrics):
        self.model, self.reader, self.sparse = model, reader, sparse
        self.max_batch, self.max_wait, self.metrics = max_batch, max_wait, metrics
        self.queue: asyncio.Queue[_Pending] | None = None
        self.held: collections.deque[_Pending] = collections.deque()  # taken from the queue, set aside, in order
        # requests that have arrived (counted by the handler, before their body is read) and are not answered yet
        self.in_flight = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="boltc-predict")  # one C call at a time anyway
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def predict(self, rows: list, top_k: int, update_history: bool) -> tuple[np.ndarray, np.ndarray]:
        """Queue the rows of a request the handler counted in ``in_flight``; the count drops when it is answered."""
        done = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Pending(rows, top_k, update_history, done))
        return await done

    async def _take(self, timeout: float | None = None) -> _Pending:
        """The next queued request whose client still waits (raises TimeoutError where none comes in `timeout`)."""
        while True:
            if not self.queue.empty() or timeout is None:
                pending = await self.queue.get()
            else:
                pending = await asyncio.wait_for(self.queue.get(), timeout)
            if not self._gone(pending):
                return pending

    def _gone(self, pending: _Pending) -> bool:
        """Whether the request's client went away (it is then answered: there is nothing to score)."""
        if pending.done.cancelled():
            self.in_flight -= 1
            return True
        return False

    def _first(self) -> _Pending | None:
        """The earliest request set aside whose client still waits."""
        while self.held:
            pending = self.held.popleft()
            if not self._gone(pending):
                return pending
        return None

    def _joiner(self, first: _Pending, room: int) -> _Pending | None:
        """A request set aside that can join `first`'s batch: none beyond a history update, which goes first."""
        for index, pending in enumerate(self.held):
            if pending.update_history:
                return None
            if pending.top_k == first.top_k and len(pending.rows) <= room and not self._gone(pending):
                del self.held[index]
                return pending
        return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._first() or await self._take()
            batch, rows = [first], len(first.rows)
            deadline = loop.time() + self.max_wait
            while not first.update_history and rows < self.max_batch:
                joiner = self._joiner(first, self.max_batch - rows)
                if joiner is None:
                    if (self.queue.empty() and self.in_flight <= len(batch) + len(self.held)) or \
                            any(pending.update_history for pending in self.held):
                        break  # no other request has arrived, or what arrives now must wait for a history update
                    try:
                        joiner = await self._take(max(0.0, deadline - loop.time()))
                    except asyncio.TimeoutError:
                        break
                    if joiner.update_history or joiner.top_k != first.top_k or \
                            rows + len(joiner.rows) > self.max_batch:
                        self.held.append(joiner)
                        continue
                batch.append(joiner)
                rows += len(joiner.rows)
            await self._score(loop, batch)

    async def _score(self, loop, batch: list[_Pending]) -> None:
        rows = [row for pending in batch for row in pending.rows]
        try:
            ids, scores = await loop.run_in_executor(self.executor, self._predict, rows, batch[0].top_k,
                                                     batch[0].update_history)
        except (BoltError, ValueError) as exc:  # a row the featurizer refused: the requests are answered one by one
            if len(batch) > 1:
                for pending in batch:
                    await self._score(loop, [pending])
                return
            self._settle(batch[0], exception=RequestError("rows", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 (the server must outlive whatever one batch does)
            for pending in batch:
                self._settle(pending, exception=exc)
            return
        self.metrics.batch_rows.observe(len(rows))
        start = 0
        for pending in batch:
            end = start + len(pending.rows)
            self._settle(pending, (ids[start:end], scores[start:end]))
            start = end

    def _predict(self, rows: list, top_k: int, update_history: bool):
        return self.model.predict(self.reader.data(rows), top_k=top_k, sparse=self.sparse,
                                  update_history=update_history)

    def _settle(self, pending: _Pending, result=None, exception: BaseException | None = None) -> None:
        self.in_flight -= 1
        if pending.done.done():  # its client went away while it was scored
            return
        if exception is not None:
            pending.done.set_exception(exception)
        else:
            pending.done.set_result(result)


# -- metrics ----------------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observed: int = 0

    def __post_init__(self):
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.observed += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip((*self.buckets, math.inf), self.counts):
            cumulative += count
            le = "+Inf" if bound == math.inf else f"{bound:g}"
            lines.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="{le}"}} {cumulative}')
        suffix = f"{{{labels}}}" if labels else ""
        return lines + [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.observed}"]


@dataclass
class ServerMetrics:
    requests: dict[tuple[str, int], int] = field(default_factory=dict)  # (path, status) -> count
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_rows: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    rows: int = 0

    def count(self, path: str, status: int) -> None:
        self.requests[(path, status)] = self.requests.get((path, status), 0) + 1

    def text(self) -> str:
        lines = ["# HELP boltc_requests_total HTTP requests answered, by path and status.",
                 "# TYPE boltc_requests_total counter"]
        lines += [f'boltc_requests_total{{path="{path}",status="{status}"}} {count}'
                  for (path, status), count in sorted(self.requests.items())]
        lines += ["# HELP boltc_rows_total Rows predicted.", "# TYPE boltc_rows_total counter",
                  f"boltc_rows_total {self.rows}",
                  "# HELP boltc_predict_seconds Time from a /predict request's arrival to its answer.",
                  "# TYPE boltc_predict_seconds histogram", *self.latency.lines("boltc_predict_seconds"),
                  "# HELP boltc_batch_rows Rows of each batch call to the model.",
                  "# TYPE boltc_batch_rows histogram", *self.batch_rows.lines("boltc_batch_rows")]
        return "\n".join(lines) + "\n"


# -- the application --------------------------------------------------------------------------------------------


def metadata(model: Model, model_path: str, sparse: bool, options: ServeOptions) -> dict:
    plan = model.plan
    names = model.label_names
    return {
        "model": plan.model_name,
        "model_file": model_path,
        "spec": Path(plan.spec_path).name,
        "boltc_version": __version__,
        "inputs": [{"name": i.name, "kind": i.kind, "dim": i.dim,
                    **({"column": i.column.header, "column_kind": i.column.kind} if i.column else {})}
                   for i in plan.inputs],
        "outputs": plan.output.out_dim,
        "labels": list(names) if names is not None else None,
        "sparse": sparse,
        "top_k_most": plan.output.lsh.inference_active if sparse else plan.output.out_dim,
        "inference_only": model.inference_only,
        "history_updates": options.allow_history_updates,
        "max_batch": options.max_batch,
        "max_wait_ms": options.max_wait_ms,
    }


def create_app(model: Model, model_path: str = "", options: ServeOptions = ServeOptions()):
    """The starlette application serving `model` (what ``serve`` runs under uvicorn; tests drive it too)."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, PlainTextResponse
        from starlette.routing import Route
    except ImportError:
        raise UsageError("boltc serve needs starlette and uvicorn: pip install 'boltc[serve]'") from None
    if options.max_batch < 1 or not options.max_wait_ms >= 0:
        raise UsageError("max_batch must be at least 1 and max_wait_ms at least 0")
    sparse = model.sparse_output if options.sparse is None else options.sparse
    if sparse and not model.sparse_output:
        raise UsageError(f"model '{model.plan.model_name}' has no LSH-sparse output: serve it with --dense")
    if options.threads is not None:
        model.threads = options.threads
    reader = RowReader(model)
    metrics = ServerMetrics()
    batcher = MicroBatcher(model, reader, sparse, options.max_batch, options.max_wait_ms / 1000, metrics)
    described = metadata(model, model_path, sparse, options)
    top_k_most, names = described["top_k_most"], model.label_names

    def error(path: str, status: int, field_name: str, message: str):
        metrics.count(path, status)
        return JSONResponse({"error": message, "field": field_name}, status_code=status)

    async def predict(request: Request):
        started = time.perf_counter()
        batcher.in_flight += 1  # from its arrival: a batch being gathered may wait for it
        queued = False
        try:
            body = _json_object(await _bounded_body(request))
            top_k, update = _request_options(body, top_k_most, options.allow_history_updates)
            rows = reader.rows(body)  # typed columns are checked by the featurizer, in the batch call
            queued = True  # the batcher answers it, and counts it out
            ids, scores = await batcher.predict(rows, top_k, update)
            if not np.isfinite(scores).all():
                raise RequestError("rows", "the model's scores of these rows are not finite: are their values far "
                                   "outside the training data's?")
            predictions = [[{"label": names[i] if names is not None and i < len(names) else i, "score": s}
                            for i, s in zip(row_ids, row_scores)]
                           for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]
            response = JSONResponse({"predictions": predictions})
        except RequestError as exc:
            return error("/predict", exc.status, exc.field_name, exc.message)
        except UsageError as exc:
            return error("/predict", 400, "rows", str(exc))
        except Exception as exc:  # noqa: BLE001 (answered, counted and survived)
            return error("/predict", 500, "", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if not queued:
                batcher.in_flight -= 1
        metrics.rows += len(predictions)
        metrics.count("/predict", 200)
        metrics.latency.observe(time.perf_counter() - started)
        return response

    async def health(request: Request):
        metrics.count("/health", 200)
        return JSONResponse({"status": "ok"})

    async def describe(request: Request):
        metrics.count("/metadata", 200)
        return JSONResponse(described)

    async def prometheus(request: Request):
        metrics.count("/metrics", 200)
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health),
                             Route("/metadata", describe), Route("/metrics", prometheus)], lifespan=lifespan)


def serve(model_path: str, options: ServeOptions) -> None:
    """Load the model file and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("boltc serve needs starlette and uvicorn: pip install 'boltc[serve]'") from None
    from boltc.pipeline import load_model

    # OpenMP threads that spin after a batch call would take the cores the event loop and its clients need
    # (measured: p99 at 8 clients 18 ms spinning, 7 ms passive); read when the model's library loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    model = load_model(model_path)
    app = create_app(model, model_path, options)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)
