"""Command line: ``python -m csoftmax info`` and ``python -m csoftmax bench``.

Exit status: 0 on success, 2 on a usage error (no or unknown command, bad
option value).
"""
import argparse
import json
import sys


def _parser():
    from . import _bench
    p = argparse.ArgumentParser(
        prog="python -m csoftmax",
        description="csoftmax: fast, accurate softmax family for NumPy.")
    sub = p.add_subparsers(dest="command", metavar="{info,bench}")

    pi = sub.add_parser("info", help="print the build/runtime configuration")
    pi.add_argument("--json", action="store_true", help="machine-readable output")

    pb = sub.add_parser(
        "bench", help="side-by-side benchmark (ns/element) against the memcpy floor and peers",
        description="Time csoftmax beside the memory floor (np.copyto; np.sum for "
                    "reductions), the textbook max-shifted formula written in NumPy, "
                    "scipy.special, torch and jax (those installed), in this process, "
                    "best-of-K in ns per element. The table ends with a definition of "
                    "every column; missing peers are listed with the command that adds "
                    "them.")
    pb.add_argument("--quick", action="store_true",
                    help="fewer repeats and shapes (about 15 s)")
    pb.add_argument("--threads", type=int, default=1, metavar="N",
                    help="threads for csoftmax and torch (default 1)")
    pb.add_argument("--dtype", default="float32", metavar="float32|float64|float16|bfloat16",
                    help="comma-separated dtypes (default float32; bfloat16 needs "
                         "ml_dtypes; 16-bit dtypes are judged against the copy floor)")
    pb.add_argument("--shapes", default=None, metavar="SPEC",
                    help="comma-separated shapes, e.g. 8192x1000,512x32000; a suffix :A runs "
                         f"along axis A (e.g. 32x21x128x128:1). Default: {_bench.DEFAULT_SHAPES} "
                         f"(+ {_bench.FULL_EXTRA_SHAPES} without --quick)")
    pb.add_argument("--ops", default=None, metavar="LIST",
                    help=f"comma-separated ops from {', '.join(_bench.OPS)} "
                         f"(default: all; with --quick {', '.join(_bench.DEFAULT_OPS)})")
    pb.add_argument("--peers", default=None, metavar="LIST",
                    help=f"compare only with these of {', '.join(_bench.RIVALS)} "
                         f"(default: all that are installed)")
    pb.add_argument("--repeat", type=int, default=None, metavar="K",
                    help="timed calls per measurement, best is kept (default 7, quick 3)")
    pb.add_argument("--budget", type=float, default=None, metavar="SEC",
                    help="stop repeating once a measurement took this long (default 0.35, quick 0.08)")
    pb.add_argument("--json", action="store_true", help="print results as JSON")
    pb.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    return p


def cmd_info(args):
    import numpy as np
    import csoftmax
    from . import _bench
    info = dict(csoftmax.get_config())
    info["cpu"] = _bench.cpu_model()
    info["numpy"] = np.__version__
    info["python"] = sys.version.split()[0]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"csoftmax {info['version']}")
    print(f"  isa            {info['isa']}")
    print(f"  available isas {', '.join(info['available_isas'])}")
    print(f"  openmp         {info['openmp']}")
    print(f"  threads        {info['num_threads']}")
    print(f"  cpu            {info['cpu'] or 'unknown'}")
    print(f"  python         {info['python']}")
    print(f"  numpy          {info['numpy']}")
    return 0


def cmd_bench(args, parser):
    import csoftmax
    from . import _bench
    try:
        dtypes = _bench.parse_list(args.dtype, _bench.DTYPES, "dtype")
        if "bfloat16" in dtypes and _bench.bfloat16() is None:
            raise ValueError("dtype bfloat16 needs ml_dtypes (pip install ml_dtypes)")
        ops = None
        if args.ops is not None:
            ops = _bench.parse_list(args.ops, tuple(_bench.OPS), "op")
            missing = [o for o in ops if not _bench.OPS[o].available(csoftmax)]
            if missing:
                raise ValueError(f"not available in this csoftmax: {', '.join(missing)}")
        peers = _bench.PEERS
        if args.peers is not None:
            peers = tuple(_bench.parse_list(args.peers, _bench.RIVALS, "peer")) + ("csoftmax",)
        shapes = _bench.parse_shapes(args.shapes) if args.shapes is not None else None
        if args.threads < 1:
            raise ValueError("--threads must be >= 1")
        if args.repeat is not None and args.repeat < 1:
            raise ValueError("--repeat must be >= 1")
        if args.budget is not None and args.budget < 0:
            raise ValueError("--budget must be >= 0")
    except ValueError as e:
        parser.error(str(e))        # exits 2
    doc = _bench.run(ops=ops, shapes=shapes, dtypes=dtypes, threads=args.threads,
                     quick=args.quick, repeat=args.repeat, budget=args.budget, peers=peers,
                     progress=None if args.no_progress else sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_bench.format_table(doc))
    return 0


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        return cmd_info(args)
    if args.command == "bench":
        return cmd_bench(args, parser._subparsers._group_actions[0].choices["bench"])
    parser.print_usage(sys.stderr)
    sys.stderr.write("python -m csoftmax: error: a command is required (info or bench)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
