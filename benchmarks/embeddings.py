"""Embeddings through Quasar's HTTP API vs the same llama.cpp embedding runtime called in-process.

Same model file (the built-in all-MiniLM-L6-v2 GGUF), same llama.cpp parameters (slots, context, batch,
threads), same inputs. The in-process side is an `xllamacpp.Server` built in this process with the
parameters Quasar's engine uses (engines/llamacpp.py `_embedding_params`) and called with
`handle_embeddings`; the HTTP side is `quasar serve` with one embedding model, driven by a keep-alive
http.client connection (its JSON encoding and decoding counted on its side, as a client pays it). Rounds
alternate between the sides, which goes first alternating too; only one side works at a time. For each
batch size the report gives each side's median inputs/s over the rounds and the median of the per-round
ratios (HTTP / in-process).

    .venv/bin/python benchmarks/embeddings.py [--batches 1 32 256] [--rounds 5] [--threads 2] [--encoding float]

Inputs are short texts (about ten words), a different set in every request. The HTTP side's llama.cpp
runs at `nice: 0`, the in-process side's priority (Quasar's default of 5 would hand a busy machine's
other processes the difference).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quasar.engines.llamacpp import _embedding_params  # noqa: E402
from quasar.engines.minilm import installed_path  # noqa: E402
from tests.server import quasar_server  # noqa: E402

CONTEXT = 512
PARALLEL = 4
WORDS = [
    "river",
    "stone",
    "light",
    "window",
    "garden",
    "paper",
    "music",
    "winter",
    "coffee",
    "signal",
    "market",
    "forest",
]


def texts(start: int, count: int) -> list[str]:
    """`count` short texts, different for every `start`."""
    out = []
    for i in range(start, start + count):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8)]
        out.append(f"Sentence {i}: the " + " ".join(words) + ".")
    return out


def requests_per_round(batch: int) -> int:
    """At least 64 inputs and two requests per side and round."""
    return max(2, 64 // batch)


class InProcess:
    def __init__(self, threads: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(installed_path())
        params.n_parallel = PARALLEL
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = -1
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.ui = False
        _embedding_params(params, CONTEXT, PARALLEL)
        self.server = xllamacpp.Server(params)

    def run(self, batches: list[list[str]]) -> float:
        started = time.perf_counter()
        for inputs in batches:
            body = self.server.handle_embeddings({"input": inputs})
            assert len(body["data"]) == len(inputs), body
        return time.perf_counter() - started


class OverHTTP:
    def __init__(self, url: str, encoding: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.encoding = encoding

    def run(self, batches: list[list[str]]) -> float:
        """A new connection each time: the server closes one left idle while the other side ran."""
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)  # a loaded machine: minutes
        started = time.perf_counter()
        for inputs in batches:
            body = orjson.dumps({"model": "minilm", "input": inputs, "encoding_format": self.encoding})
            self.conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            reply = orjson.loads(resp.read())
            assert resp.status == 200 and len(reply["data"]) == len(inputs), reply
        elapsed = time.perf_counter() - started
        self.conn.close()
        return elapsed


def config(threads: int) -> str:
    return (
        "models:\n  - name: minilm\n    mode: embedding\n    deployments:\n"
        f"      - engine: llamacpp\n        path: builtin:all-minilm-l6-v2\n        parallel: {PARALLEL}\n"
        f"        context_length: {CONTEXT}\n        threads: {threads}\n        nice: 0\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoding", choices=["float", "base64"], default="float")
    args = parser.parse_args()

    local = InProcess(args.threads)
    with quasar_server(config(args.threads)) as running:
        remote = OverHTTP(running.url, args.encoding)
        sides = {"in-process": local, "http": remote}
        for side in sides.values():  # warm both: every slot used once
            side.run([texts(0, 64)])
        print(f"threads {args.threads}, {PARALLEL} slots, encoding {args.encoding}, {args.rounds} rounds")
        print(f"{'batch':>6} {'in-process/s':>13} {'http/s':>9} {'ratio':>6} {'min..max ratio':>15}")
        offset = 1000
        for batch in args.batches:
            count = requests_per_round(batch)
            rates: dict[str, list[float]] = {name: [] for name in sides}
            ratios = []
            for round_no in range(args.rounds):
                work = [texts(offset + k * batch, batch) for k in range(count)]
                offset += count * batch
                order = list(sides) if round_no % 2 == 0 else list(reversed(sides))
                this = {}
                for name in order:
                    this[name] = batch * count / sides[name].run(work)
                    rates[name].append(this[name])
                ratios.append(this["http"] / this["in-process"])
            print(
                f"{batch:>6} {statistics.median(rates['in-process']):>13.0f} {statistics.median(rates['http']):>9.0f}"
                f" {statistics.median(ratios):>6.2f} {min(ratios):>7.2f}..{max(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
