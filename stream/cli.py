"""``fusionrec`` command line: kafka, worker, replay, tail, config, demo, lag, dashboard, eval, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from fusionrec.config import Config, load_config, redacted, reference
from fusionrec.errors import ConfigError, RecError


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
    cfg = load_config(args.config)
    print(json.dumps(redacted(cfg), indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.demo import run_demo

    return run_demo(args.dataset, rate=args.rate, limit=args.limit, show=args.show, keep_broker=args.keep_broker)


def cmd_lag(args: argparse.Namespace) -> int:
    import time

    from stream.lag import format_lag, read_lag, worker_lag_topics

    cfg = load_config(args.config)
    group = args.group or cfg.worker.app_id
    topics = args.topics.split(",") if args.topics else worker_lag_topics(cfg)
    while True:
        rows = asyncio.run(read_lag(cfg.kafka, group, topics))
        if args.json:
            print(json.dumps([r.__dict__ for r in rows]), flush=True)
        else:
            print(f"{time.strftime('%H:%M:%S')}  consumer lag of group {group!r} (total {sum(r.lag for r in rows)})")
            print(format_lag(rows), flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from stream.dashboard import DashboardServer

    cfg = load_config(args.config)
    targets = args.targets.split(",") if args.targets else [f"http://127.0.0.1:{cfg.worker.web_port}/metrics"]
    server = DashboardServer(cfg, targets, group=args.group, host=args.host, port=args.port, interval_s=args.interval)
    print(f"dashboard: http://{args.host}:{args.port}/dashboard  metrics: http://{args.host}:{args.port}/metrics", flush=True)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_train_sequence(args: argparse.Namespace) -> int:
    """``fusionrec train-sequence``: train the sequence model on a dataset folder's history events (every
    event with ``--all-events``) and write the file a worker serves (``model.sequence_model``)."""
    from dataclasses import replace

    from fusionrec.dataset import dataset_platforms, read_events, read_items
    from fusionrec.evaluation.protocol.frozen import ENCODE_CHUNK
    from fusionrec.evaluation.protocol.replay import every_core, positive_journeys
    from fusionrec.evaluation.sasrec import SASRecBaseline, sequence_config, training_device
    from fusionrec.learner.sequence import SequenceModel
    from stream.compose import build_recommender

    base = load_config(args.config)
    cfg = base.replace(platforms=tuple(dataset_platforms(args.dataset)), model=replace(base.model, sequence_model=""))
    net_cfg = sequence_config(**sasrec_params(args.sequence_param, "--sequence-param"))
    training_device(net_cfg.device)  # a device that is not there: said before the catalog is encoded
    rec = build_recommender(cfg)
    items = list(read_items(args.dataset))
    with every_core():
        for s in range(0, len(items), ENCODE_CHUNK):
            rec.apply_items(items[s : s + ENCODE_CHUNK])
    events = (de for de in read_events(args.dataset) if args.all_events or de.role == "history")
    seqs = positive_journeys(events, cfg.model.event_weights)
    init = SequenceModel.load(args.init) if args.init else None
    net = SASRecBaseline(rec.store, net_cfg, init=init)
    net.fit(seqs)  # on every core unless --sequence-param threads=N
    served = net.serving_model()
    served.save(args.out)  # renamed over the old file: workers following it serve the new one
    info = net.info()
    start = ""
    if init is not None:
        start = f"fine-tuned from {args.init} (version {init.version}, validation ndcg@10 {info['valid_curve'][0]} at epoch 0), "
    print(
        f"sequence model version {served.version}: {start}{len(seqs)} people, {info['examples']} training positions, "
        f"{info['epochs']} epochs (best {info['best_epoch']}, validation ndcg@10 {info['best_valid_ndcg@10']}), "
        f"{info['train_seconds']} s -> {args.out}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fusionrec.evaluation import EvalOptions, evaluate
    from fusionrec.evaluation.report import format_table
    from fusionrec.dataset import dataset_platforms
    from stream.compose import build_recommender

    # the dataset's platforms are the ones evaluated (the config's may name a deployment's)
    cfg = load_config(args.config).replace(platforms=tuple(dataset_platforms(args.dataset)))
    if args.protocol == "frozen":
        return eval_frozen(cfg, args)
    if (
        args.split != "test" or args.keep_consumed or args.sasrec_param or args.baselines or args.baseline_param or args.no_model
        or args.refit_epochs or args.no_sequence_refresh
    ):  # fmt: skip
        raise ConfigError(
            "--split, --keep-consumed, --baselines, --sasrec-param, --baseline-param, --no-model, --refit-epochs and "
            "--no-sequence-refresh need --protocol frozen"
        )
    if (args.sequence_param or args.sequence_finetune_every) and not args.sequence_model:
        raise ConfigError("--sequence-param and --sequence-finetune-every need --sequence-model")
    options = EvalOptions(
        limit_users=args.limit_users,
        restrict_to_target_platform=args.restrict_to_target_platform,
        sasrec=not args.no_sasrec,
        sasrec_epochs=args.sasrec_epochs,
        baselines=not args.no_baselines,
        policy=args.policy,
        sequence_model=args.sequence_model,
        sequence_params=tuple(sasrec_params(args.sequence_param, "--sequence-param").items()),
        sequence_finetune_every=args.sequence_finetune_every,
    )
    report = evaluate(cfg, args.dataset, options, recommender=build_recommender(cfg))
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


def sasrec_params(pairs: Sequence[str], flag: str = "--sasrec-param") -> dict[str, Any]:
    """``NAME=VALUE`` overrides of SASRecConfig fields (the grid of docs/EVALUATION.md)."""
    from dataclasses import fields

    from fusionrec.evaluation.sasrec import SASRecConfig

    kinds = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true", "yes")}
    parsers = {f.name: kinds[str(f.type)] for f in fields(SASRecConfig) if str(f.type) in kinds}
    return name_value_params(pairs, flag, parsers)


def name_value_params(pairs: Sequence[str], flag: str, parsers: dict[str, Any]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs of ``flag``, each value parsed by its name's parser; a ConfigError names
    the valid names or the value that does not parse."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in parsers or not value:
            raise ConfigError(f"{flag} takes NAME=VALUE with NAME one of {', '.join(parsers)}; got {pair!r}")
        try:
            out[name] = parsers[name](value)
        except ValueError as exc:
            raise ConfigError(f"{flag} {pair!r}: {exc}") from exc
    return out


def frozen_baselines(args: argparse.Namespace) -> tuple[str, ...]:
    from fusionrec.evaluation.protocol.frozen import BASELINES

    if args.no_baselines:
        return ()
    names = tuple(n for n in args.baselines.split(",") if n) if args.baselines else BASELINES
    return tuple(n for n in names if not (args.no_sasrec and n == "sasrec"))


def eval_frozen(cfg: Config, args: argparse.Namespace) -> int:
    """``fusionrec eval --protocol frozen``: the papers' leave-one-out protocol, the model (built here,
    at the composition root, unless ``--no-model``) and the baselines."""
    from dataclasses import replace

    from fusionrec.evaluation.protocol.frozen import FrozenOptions, evaluate_frozen, format_frozen
    from fusionrec.evaluation.sasrec import SASRecConfig, sequence_config
    from stream.compose import build_recommender

    others = name_value_params(args.baseline_param, "--baseline-param", {"popularity_half_life_days": float, "cooccurrence_history": int})
    overrides = sasrec_params(args.sasrec_param)
    if args.sasrec_epochs is not None:
        overrides["epochs"] = args.sasrec_epochs
    if (args.sequence_param or args.no_sequence_refresh) and not args.sequence_model:
        raise ConfigError("--sequence-param and --no-sequence-refresh need --sequence-model")
    if args.sequence_finetune_every:
        raise ConfigError("--sequence-finetune-every is for the streaming protocol (the frozen one learns nothing from the targets)")
    sequence = sasrec_params(args.sequence_param, "--sequence-param")
    options = FrozenOptions(
        split=args.split,
        keep_consumed=args.keep_consumed,
        limit_users=args.limit_users,
        baselines=frozen_baselines(args),
        sasrec_config=replace(SASRecConfig(), **overrides),
        model=not args.no_model,
        policy=args.policy,
        restrict_to_target_platform=args.restrict_to_target_platform,
        sequence_model=args.sequence_model,
        sequence_refresh=not args.no_sequence_refresh,
        refit_epochs=args.refit_epochs,
        sequence_config=sequence_config(**sequence),
        **others,
    )
    recommender = build_recommender(cfg) if options.model else None
    report = evaluate_frozen(cfg, args.dataset, options, recommender=recommender)
    print(format_frozen(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from stream.bench.report import DEFAULT_DATASET, BenchOptions, run_bench

    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(float(x)) for x in text.split(",") if x)

    def floats(text: str) -> tuple[float, ...]:
        return tuple(float(x) for x in text.split(",") if x)

    given = {name for name in ("catalogs", "people", "events", "step_s", "warmup_events", "rates") if getattr(args, f"e2e_{name}") is not None}
    defaults = BenchOptions()
    options = BenchOptions(
        dataset=args.dataset or DEFAULT_DATASET,
        device=args.device,
        quick=args.quick,
        skip_e2e=args.skip_e2e,
        index_sizes=ints(args.index_sizes) if args.index_sizes else None,
        only=tuple(args.only.split(",")) if args.only else (),
        sequence_model=args.sequence_model,
        e2e_dataset=args.e2e_dataset or args.dataset,  # --dataset alone moves the e2e runs onto it too
        e2e_catalogs=ints(args.e2e_catalogs) if args.e2e_catalogs else defaults.e2e_catalogs,
        e2e_workers=ints(args.e2e_workers),
        e2e_people=args.e2e_people or defaults.e2e_people,
        e2e_platforms=args.e2e_platforms,
        e2e_events=args.e2e_events or defaults.e2e_events,
        e2e_seed=args.e2e_seed,
        e2e_rates=floats(args.e2e_rates) if args.e2e_rates else (),
        e2e_start_rate=args.e2e_start_rate,
        e2e_rate_factor=args.e2e_rate_factor,
        e2e_max_rate=args.e2e_max_rate,
        e2e_refinements=args.e2e_refinements,
        e2e_step_s=args.e2e_step_s if args.e2e_step_s is not None else defaults.e2e_step_s,
        e2e_warmup_events=args.e2e_warmup_events if args.e2e_warmup_events is not None else defaults.e2e_warmup_events,
        e2e_worker=args.e2e_worker,
        profile_dir=args.profile,
        extra={"e2e_given": given},
    )
    report = run_bench(options, out=args.json, log=lambda line: print(line, flush=True))
    if not args.json:
        print(json.dumps(report, indent=2, default=str))
    return 0


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
    d.add_argument("--rate", type=float, default=2000.0, help="offered events/s, open loop")
    d.add_argument("--limit", type=int, default=None, help="events offered after the warm-up (default: the rest of the dataset)")
    d.add_argument("--show", type=int, default=12, help="recommendations to print")
    d.add_argument("--keep-broker", action="store_true")
    d.set_defaults(func=cmd_demo)

    lg = sub.add_parser("lag", help="consumer lag per group, topic and partition, read from the broker")
    lg.add_argument("--group", default=None, help="consumer group (default: the worker's app id)")
    lg.add_argument("--topics", default=None, help="comma-separated topics (default: events topics + by-person)")
    lg.add_argument("--watch", type=float, default=0.0, help="repeat every N seconds")
    lg.add_argument("--json", action="store_true", help="one JSON array of rows per reading")
    lg.set_defaults(func=cmd_lag)

    db = sub.add_parser("dashboard", help="serve the lag dashboard and lag metrics for a group of workers")
    db.add_argument("--targets", default=None, help="comma-separated worker /metrics URLs (default: this host's worker)")
    db.add_argument("--group", default=None, help="consumer group (default: the worker's app id)")
    db.add_argument("--host", default="127.0.0.1")
    db.add_argument("--port", type=int, default=6060)
    db.add_argument("--interval", type=float, default=2.0, help="seconds between readings")
    db.set_defaults(func=cmd_dashboard)
    ts = sub.add_parser("train-sequence", help="train the sequence model on a dataset folder and write the file a worker serves")
    ts.add_argument("--dataset", required=True, help="dataset folder (items.tsv.gz, events.tsv.gz)")
    ts.add_argument("--out", required=True, help="the file to write (.npz); point model.sequence_model at it")
    ts.add_argument("--all-events", action="store_true", help="train on the targets too (default: history events only)")
    ts.add_argument(
        "--init", default=None, metavar="FILE",
        help="fine-tune this served model (it may be --out itself): training starts from its weights, which stay unless "
        "an epoch beats them on the validation targets; the file written has its version + 1",
    )
    ts.add_argument(
        "--sequence-param", action="append", default=[], metavar="NAME=VALUE",
        help="a SASRecConfig field of the network (repeatable; item_text=only, max_len=20, blocks=1 by default)",
    )
    ts.set_defaults(func=cmd_train_sequence)

    ev = sub.add_parser("eval", help="offline replay evaluation of the core against baselines (no Kafka)")
    ev.add_argument("--dataset", required=True, help="dataset folder (items.tsv.gz, events.tsv.gz)")
    ev.add_argument("--json", default=None, help="write the full report to this file")
    ev.add_argument("--limit-users", type=int, default=None, help="only the first N users (for a quick run)")
    ev.add_argument("--restrict-to-target-platform", action="store_true", help="rank with the target platform's history only")
    ev.add_argument("--no-sasrec", action="store_true", help="skip the SASRec baseline (faster)")
    ev.add_argument("--no-baselines", action="store_true", help="the model only (e.g. to compare ranking policies)")
    ev.add_argument(
        "--policy", default=None, choices=["none", "epsilon_greedy", "thompson", "ucb"],
        help="ranking policy of the model (default: policy.name of the config; none = pure exploitation)",
    )
    ev.add_argument(
        "--sasrec-epochs", type=int, default=None,
        help="SASRec's maximum epochs (default 200; early stopping or a time cap that scales with the data end it sooner)",
    )
    ev.add_argument(
        "--protocol", default="stream", choices=["stream", "frozen"],
        help="stream: test-then-train replay (default); frozen: the papers' leave-one-out protocol (the model and the baselines)",
    )
    ev.add_argument(
        "--split", default="test", choices=["test", "valid"],
        help="frozen only: valid = each user's last history item is the target, the real targets dropped",
    )
    ev.add_argument(
        "--keep-consumed", action="store_true",
        help="frozen only: the baselines rank consumed items too (the model always excludes them)",
    )
    ev.add_argument("--no-model", action="store_true", help="frozen only: the baselines only (no core is built)")
    ev.add_argument(
        "--baselines", default=None, metavar="LIST",
        help="frozen only: comma-separated subset of popularity,cooccurrence,text_mean,sasrec",
    )
    ev.add_argument(
        "--sasrec-param", action="append", default=[], metavar="NAME=VALUE",
        help="frozen only: a SASRecConfig field (repeatable), e.g. dropout=0.2",
    )
    ev.add_argument(
        "--baseline-param", action="append", default=[], metavar="NAME=VALUE",
        help="frozen only (repeatable): popularity_half_life_days=D (inf: plain counts) or cooccurrence_history=N",
    )
    ev.add_argument(
        "--sequence-model", action="store_true",
        help="the model gets the learned sequence model over text as its seq feature (frozen: trained on the first 80%% of the "
        "history; streaming: on the first half of the stream, served from there on)",
    )
    ev.add_argument(
        "--sequence-param", action="append", default=[], metavar="NAME=VALUE",
        help="with --sequence-model: a SASRecConfig field of its network (repeatable; item_text=only, max_len=20, blocks=1 by default)",
    )
    ev.add_argument(
        "--no-sequence-refresh", action="store_true",
        help="frozen, with --sequence-model: rank the targets with the network trained on the first 80%% of the history "
        "(default: that network fine-tuned on the whole history, as a deployment's trainer refreshes it)",
    )
    ev.add_argument(
        "--sequence-finetune-every", type=int, default=0, metavar="N",
        help="streaming, with --sequence-model: once the network is served, fine-tune it every N learned events on the "
        "journeys of the people seen since, as a worker does (model.sequence_finetune_*; 0: never)",
    )
    ev.add_argument(
        "--refit-epochs", type=int, default=0, metavar="N",
        help="frozen only: refit the model's ranking weights, N passes, on each person's last history item per platform, "
        "ranked from the state before it with the end-of-history statistics, as the targets are (0: off)",
    )
    ev.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="throughput, latency and memory benchmarks (encoder, index, core, end to end)")
    b.add_argument("--json", default=None, help="write the figures to this file")
    b.add_argument("--dataset", default=None, help="dataset folder of core and encoder (default data/movielens-small); given, the e2e runs use it too")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    b.add_argument("--skip-e2e", action="store_true", help="no broker, no worker processes")
    b.add_argument("--only", default=None, help="comma-separated subset of core,encoder,index,e2e")
    b.add_argument("--sequence-model", action="store_true", help="core: train the sequence model on the warm-up and serve it in the timed part")
    b.add_argument("--index-sizes", default=None, help="items per index benchmark (default 10000,100000,1000000)")
    e = b.add_argument_group("end to end (the sustained-rate search; BENCHMARKS.md)")
    e.add_argument("--e2e-dataset", default=None, help="dataset folder for the e2e runs (default: the synthetic workload)")
    e.add_argument("--e2e-catalogs", default=None, help="synthetic catalog sizes, one run each (default 8000,100000)")
    e.add_argument("--e2e-workers", default="1,2", help="worker counts; counts above 1 run on the first catalog only")
    e.add_argument("--e2e-people", type=int, default=None, help="synthetic people (default 100000)")
    e.add_argument("--e2e-platforms", type=int, default=2, help="synthetic platforms")
    e.add_argument("--e2e-events", type=int, default=None, help="synthetic events drawn (the steps cycle through them; default 1000000)")
    e.add_argument("--e2e-seed", type=int, default=0, help="seed of the synthetic workload")
    e.add_argument("--e2e-rates", "--e2e-loads", dest="e2e_rates", default=None, help="explicit offered rates (events/s), tried in ascending order")
    e.add_argument("--e2e-start-rate", type=float, default=500.0, help="first offered rate of the geometric ladder")
    e.add_argument("--e2e-rate-factor", type=float, default=2**0.5, help="ratio between two ladder steps")
    e.add_argument("--e2e-max-rate", type=float, default=100_000.0, help="the ladder stops here")
    e.add_argument("--e2e-refinements", type=int, default=1, help="bisections between the highest pass and the first fail")
    e.add_argument("--e2e-step-s", "--e2e-phase-s", dest="e2e_step_s", type=float, default=None, help="seconds of each offered-rate step (default 30)")
    e.add_argument("--e2e-warmup-events", type=int, default=None, help="events fed and drained before the first step (default 10000)")
    e.add_argument(
        "--e2e-worker", default="fusionrec", choices=["fusionrec", "echo"],
        help="echo: a stand-in that only answers each event, to measure what the publisher, broker and consumer allow here",
    )
    b.add_argument("--profile", default=None, help="py-spy the worker during one extra step at the sustained rate; raw stacks go to this folder")
    b.set_defaults(func=cmd_bench)
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
