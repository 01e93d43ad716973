"""Writes the generated shapes beside this file (CSV time_s,events_per_s,bytes_per_event, one row a
second). Standard library only; `python3 data/traces/generated/generate.py` rewrites them exactly.
step-30x.csv and ramp-30x.csv were written earlier by a script not kept (see README.md)."""

import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        f.write("time_s,events_per_s,bytes_per_event\n")
        for t, (rate, size) in enumerate(rows):
            f.write(f"{t},{rate:.1f},{size}\n")


def noisy(rng, rate):
    return rate * rng.uniform(0.95, 1.05)


def io_frames(rng):
    # 2 MB frames (camera stills, vibration captures) at 60/s, with four 3x bursts of 2-4 minutes.
    length = 3600
    bursts = sorted(rng.sample(range(300, length - 300, 60), 4))
    spans = [(b, b + rng.randint(120, 240)) for b in bursts]
    return [
        (noisy(rng, 60.0 * (3.0 if any(a <= t < b for a, b in spans) else 1.0)), 2_000_000)
        for t in range(length)
    ]


def false_alarms(rng):
    # 1,200/s with a 2.5x spike of 10-20 s every 60-120 s: each trips the edges' burst signal and is
    # over before a worker could start.
    length, t, rows = 3600, 0, []
    while len(rows) < length:
        quiet = rng.randint(60, 120)
        spike = rng.randint(10, 20)
        rows += [noisy(rng, 1_200.0) for _ in range(quiet)]
        rows += [noisy(rng, 3_000.0) for _ in range(spike)]
        t += quiet + spike
    return [(r, 2_500) for r in rows[:length]]


def diurnal(rng):
    # A day in an hour: 300/s at night to 3,000/s at noon, a sine, 8 KB events.
    length = 3600
    return [
        (noisy(rng, 300.0 + 2_700.0 * 0.5 * (1.0 - math.cos(2.0 * math.pi * t / length))), 8_000)
        for t in range(length)
    ]


def staircase(rng):
    # 1,000/s up to 5,000/s in steps of 1,000 every 6 minutes, then back down the same way.
    levels = [1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0, 4_000.0, 3_000.0, 2_000.0, 1_000.0]
    return [(noisy(rng, level), 2_500) for level in levels for _ in range(360)]


if __name__ == "__main__":
    rng = random.Random(7)
    write("io-frames.csv", io_frames(rng))
    write("false-alarms.csv", false_alarms(rng))
    write("diurnal.csv", diurnal(rng))
    write("staircase.csv", staircase(rng))
