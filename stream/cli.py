"""``fusionrec`` command line: kafka, worker, replay, tail, config, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from fusionrec.config import load_config, reference
from fusionrec.errors import RecError


def cmd_kafka(args: argparse.Namespace) -> int:
    from stream.kafka_local.broker import LocalCluster

    cluster = LocalCluster(args.data_dir, size=args.nodes, port=args.port)
    if args.action == "start":
        print(cluster.start())
    elif args.action == "stop":
        cluster.stop()
        print("stopped")
    else:
        status = cluster.status()
        print(json.dumps(status, indent=2))
        return 0 if cluster.running() else 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import faust

    from stream.app import create_app

    cfg = load_config(args.config)
    app = create_app(cfg)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from stream.replay import replay

    cfg = load_config(args.config)
    stats = asyncio.run(replay(cfg, args.dataset, rate=args.rate, limit=args.limit, skip_items=args.skip_items))
    print(f"published {stats.items} items and {stats.events} events in {stats.seconds:.1f}s ({stats.events_per_s:.0f} events/s)")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from stream.tail import follow, format_rec

    cfg = load_config(args.config)

    async def run() -> None:
        n = 0
        async for rec, received in follow(cfg, from_beginning=args.from_beginning, idle_timeout_s=args.idle_timeout):
            print(format_rec(rec, received), flush=True)
            n += 1
            if args.count and n >= args.count:
                return

    asyncio.run(run())
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.reference:
        print(reference())
        return 0
    import dataclasses

    cfg = load_config(args.config)
    print(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.demo import run_demo

    return run_demo(args.dataset, rate=args.rate, limit=args.limit, show=args.show, keep_broker=args.keep_broker)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusionrec", description="Streaming multi-platform recommender.")
    p.add_argument("--config", help="TOML config file (default: $FUSIONREC_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="run the local Apache Kafka broker (KRaft)")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--data-dir", default=None, help="default: ~/.cache/fusionrec/kafka-data")
    k.add_argument("--nodes", type=int, default=1)
    k.add_argument("--port", type=int, default=None)
    k.set_defaults(func=cmd_kafka)

    w = sub.add_parser("worker", help="run a stream worker")
    w.add_argument("--loglevel", default="warning")
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("replay", help="publish a dataset folder to the topics")
    r.add_argument("--dataset", required=True)
    r.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as possible")
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--skip-items", action="store_true")
    r.set_defaults(func=cmd_replay)

    t = sub.add_parser("tail", help="print recommendations as they arrive")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--count", type=int, default=0)
    t.add_argument("--idle-timeout", type=float, default=None)
    t.set_defaults(func=cmd_tail)

    c = sub.add_parser("config", help="print the effective config, or the reference of every setting")
    c.add_argument("--reference", action="store_true")
    c.set_defaults(func=cmd_config)

    d = sub.add_parser("demo", help="local broker + worker + replay of a dataset, with latencies")
    d.add_argument("--dataset", default=os.path.join("data", "movielens-small"))
    d.add_argument("--rate", type=float, default=2000.0)
    d.add_argument("--limit", type=int, default=None)
    d.add_argument("--show", type=int, default=12, help="recommendations to print")
    d.add_argument("--keep-broker", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        return int(args.func(args))
    except RecError as exc:
        print(f"fusionrec: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
