"""Tables of the lifecycle benchmarks from criterion's results:
python3 benches/summarize_lifecycle.py target/criterion"""

import sys

from criterion_results import fmt_rate, load

GROUPS = {"lifecycle_scavenge", "lifecycle_append", "lifecycle_read"}


def main(root):
    r = load(root, GROUPS)

    def rate(group, name):
        found = r.get((group, name))
        return None if found is None else found[1] / (found[0] / 1e9)

    def micros(group, name):
        found = r.get((group, name))
        return None if found is None else found[0] / 1e3

    def ratio(a, b):
        return "-" if a is None or b is None else f"{a / b:.2f}x"

    scavenge = rate("lifecycle_scavenge", "scavenge")
    copy = rate("lifecycle_scavenge", "copy")
    print("| segment bytes/s | scavenge | plain copy | scavenge / copy |")
    print("|---|--:|--:|--:|")
    mb = lambda x: "-" if x is None else f"{x / 1e6:.1f} MB/s"
    print(f"| 16 segments of 4 MiB, half dead | {mb(scavenge)} | {mb(copy)} | {ratio(scavenge, copy)} |")
    print()
    idle = rate("lifecycle_append", "idle")
    print("| durable appends, 16 threads, 256-byte events | ev/s | against no scavenge |")
    print("|---|--:|--:|")
    for name, label in (
        ("idle", "no scavenge"),
        ("scavenging", "scavenging without pause"),
        ("scavenging_32MBps", "scavenging at 32 MiB/s"),
    ):
        busy = rate("lifecycle_append", name)
        print(f"| {label} | {fmt_rate(busy)} | {ratio(busy, idle)} |")
    print()
    base = micros("lifecycle_read", "100")
    print("| read_stream, max_count = 100 | µs per read | against 100 events of history |")
    print("|---|--:|--:|")
    for history in ("100", "10000", "100000"):
        t = micros("lifecycle_read", history)
        shown = "-" if t is None else f"{t:.1f}"
        print(f"| {history} events of history | {shown} | {ratio(t, base)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
