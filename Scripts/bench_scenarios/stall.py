"""Scenario `stall` (issue 19): does a write on one disk wait behind pool-wide work?

One fio job writes 4 KiB at random offsets of disk A (QD1, libaio, direct=1) and logs every
write's latency with its completion time (`write_lat_log`, `log_avg_msec=0`, Unix-epoch
stamps). Meanwhile the pool goes through windows, each with one activity on OTHER objects
of the same pool: nothing (background commits only, every 5 s), `snapshot diff` of two
snapshots that differ in every chunk, `snapshot list --json` over many snapshots, `pool
stats` and `df`, `check` of the mounted pool, `rmdir` of a snapshot that alone holds a large
amount, and the seconds after that rmdir (the commit that writes the released counts). A
write belongs to a window if its time in flight overlaps the window. Target: no write waits
more than 5 ms.
"""

import glob
import mmap
import os
import random
import signal
import subprocess
import time

MiB = 1 << 20
GiB = 1 << 30
TARGET_MS = 5.0


class Settings:
    def __init__(self, quick):
        self.writer_disk = 256 * MiB if quick else 1 * GiB
        self.big = 512 * MiB if quick else 8 * GiB     # what the deleted snapshot holds alone
        self.snapshots = 1000 if quick else 10000        # present during the listing
        self.listed_disk = 64 * MiB                      # the disk those snapshots are of
        self.quiet = 8                                   # s: at least one background commit
        self.loop = 4 if quick else 8                    # s per looped activity (at least one run)
        self.after_rmdir = 6                             # s: one commit interval and a margin


def scenario(base, mode, threads, h):
    s = Settings(mode.quick)
    d = h.SnapfsDaemon(base, "stall", threads)
    res = {"settings": vars(s), "setup_seconds": {}}
    try:
        t = time.perf_counter()
        h.log(f"stall: set-up: writer disk {s.writer_disk // MiB} MiB, big disk {s.big // MiB} MiB written twice")
        a = d.create_disk("a", s.writer_disk)
        h.fill(a, s.writer_disk)
        big = d.create_disk("big", s.big)
        h.fill(big, s.big)
        d.snapshot("big", "old")
        # Rewritten after the snapshot: every chunk of big@old is then its alone.
        h.fill(big, s.big)
        d.snapshot("big", "new")
        res["setup_seconds"]["disks"] = time.perf_counter() - t

        t = time.perf_counter()
        h.log(f"stall: set-up: {s.snapshots} snapshots of a {s.listed_disk // MiB} MiB disk, a 64 KiB write before each")
        many_snapshots(d, s)
        res["setup_seconds"]["snapshots"] = time.perf_counter() - t
        h.sync_image(a)
        res["exclusive_bytes_old"] = next(x["ExclusiveBytes"] for x in d.cli("snapshot", "list")["Snapshots"]
                                          if x["SnapshotId"] == "big@old")

        t = time.perf_counter()
        res["windows"] = run_windows(base, d, a, s, h)
        res["windows_seconds"] = time.perf_counter() - t
    finally:
        d.stop()
    h.log("stall: the same writer on a plain file (no snapfs)")
    res["windows"].append(host_quiet(base, s, h))
    return res


def many_snapshots(d, s):
    """`s.snapshots` snapshots of disk "listed", each after a 64 KiB write at a random offset,
    so each has map nodes of its own (a listing's exclusive-bytes walk then visits them)."""
    img = d.create_disk("listed", s.listed_disk)
    buf = mmap.mmap(-1, 65536)
    buf.write(os.urandom(65536))
    rnd = random.Random(19)
    fd = os.open(img, os.O_WRONLY | os.O_DIRECT)
    try:
        for i in range(s.snapshots):
            os.pwritev(fd, [buf], rnd.randrange(s.listed_disk // 65536) * 65536)
            os.mkdir(os.path.join(d.mnt, "snapshots", f"listed@s-{i:05d}"))
    finally:
        os.close(fd)


def cli_runner(d, h, *args):
    """One snapfs CLI call against the pool, as an activity: raises on a non-zero exit."""
    def run():
        h.sh([h.BIN, *args, "--pool", d.pool, "--json"])
    return run


def start_writer(path, size, prefix, seconds=7200):
    """The writer: fio logging each write's latency (ns) and completion time (ms, epoch)."""
    return subprocess.Popen(
        ["fio", "--name=stall-writer", f"--filename={path}", "--rw=randwrite", "--bs=4k", "--iodepth=1",
         "--direct=1", "--ioengine=libaio", f"--size={size}", "--randrepeat=0", "--invalidate=0",
         "--fallocate=none", "--time_based", f"--runtime={seconds}s", f"--write_lat_log={prefix}",
         "--log_avg_msec=0", "--log_unix_epoch=1", "--output-format=json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def host_quiet(base, s, h):
    """The same writer on a plain file of the host filesystem for the quiet window's length:
    what this machine's own device and neighbours cost a write, with no snapfs."""
    path, prefix = os.path.join(base, "stall-plain.img"), os.path.join(base, "stall-plain")
    with open(path, "w"):
        pass
    try:
        h.fill(path, s.writer_disk)
        t0 = time.time()
        writer = start_writer(path, s.writer_disk, prefix, seconds=s.quiet)
        h.CLEANUP.add_proc("fio", writer)
        if writer.wait() != 0:
            raise RuntimeError(f"stall: fio on the plain file failed: {writer.stderr.read()[-400:]}")
        return figures("limit: plain file", "none (no snapfs)", t0, time.time(), [float(s.quiet)], read_lat_log(prefix), h)
    finally:
        os.unlink(path)


def run_windows(base, d, img, s, h):
    prefix = os.path.join(base, "stall-writer")
    writer = start_writer(img, s.writer_disk, prefix)
    h.CLEANUP.add_proc("fio", writer)
    spans = []   # (window, activity, start, end, [seconds per run of the activity])

    def window(name, activity, action, least=0.0, loop=False):
        h.log(f"stall: window: {name}")
        runs, t0 = [], time.time()
        while True:
            r0 = time.perf_counter()
            action()
            runs.append(time.perf_counter() - r0)
            if not loop or time.time() - t0 >= least:
                break
        if not loop and time.time() - t0 < least:
            time.sleep(least - (time.time() - t0))
        spans.append((name, activity, t0, time.time(), runs))
        time.sleep(0.5)   # a gap, so no write straddles two activities

    statvfs = lambda: os.statvfs(d.mnt)
    try:
        time.sleep(2)     # the writer's first second (opening, first copies) belongs to no window
        if writer.poll() is not None:
            raise RuntimeError(f"stall: fio writer exited: {writer.stderr.read()[-400:]}")
        window("quiet", "background commits only", lambda: time.sleep(s.quiet))
        window("diff", "`snapshot diff big@old big@new` (every chunk differs)",
               cli_runner(d, h, "snapshot", "diff", "big@old", "big@new"), s.loop, loop=True)
        window("list", f"`snapshot list --json`, {s.snapshots} snapshots",
               cli_runner(d, h, "snapshot", "list"), s.loop, loop=True)
        window("stats", "`pool stats` and `df` (statvfs of the mount)",
               lambda: (cli_runner(d, h, "pool", "stats")(), statvfs()), s.loop, loop=True)
        window("check", "`check` of the mounted pool (data too)", cli_runner(d, h, "check"))
        window("rmdir", f"`rmdir snapshots/big@old` ({s.big // MiB} MiB its alone)",
               lambda: os.rmdir(os.path.join(d.mnt, "snapshots", "big@old")))
        window("after rmdir", f"the {s.after_rmdir} s after it (its commit)", lambda: time.sleep(s.after_rmdir))
        if writer.poll() is not None:
            raise RuntimeError(f"stall: fio writer exited during the windows: {writer.stderr.read()[-400:]}")
    finally:
        if writer.poll() is None:
            writer.send_signal(signal.SIGINT)   # fio stops its job and writes the logs out
        try:
            writer.wait(60)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()
    writes = read_lat_log(prefix)
    if not writes:
        raise RuntimeError("stall: fio wrote no latency log")
    return [figures(name, activity, t0, t1, runs, writes, h) for name, activity, t0, t1, runs in spans]


def read_lat_log(prefix):
    """Each write as (start, end) in seconds since the epoch. fio's lat log lines are
    `end time ms, latency ns, direction, block size, offset[, priority]`; direction 1 is
    a write."""
    out = []
    for path in glob.glob(prefix + "_lat.*.log"):
        with open(path) as f:
            for line in f:
                p = line.split(",")
                if len(p) < 3 or p[2].strip() != "1":
                    continue
                end, lat = int(p[0]) / 1e3, int(p[1]) / 1e9
                out.append((end - lat, end, lat))
    return out


def figures(name, activity, t0, t1, runs, writes, h):
    lats = [lat for start, end, lat in writes if end >= t0 and start <= t1]
    ms = lambda v: v * 1e3 if v is not None else None
    return {"window": name, "activity": activity, "seconds": t1 - t0, "runs": len(runs),
            "run_median_s": sorted(runs)[len(runs) // 2], "run_max_s": max(runs),
            "writes": len(lats), "p50_ms": ms(h.pct(lats, 50)), "p99_ms": ms(h.pct(lats, 99)),
            "p999_ms": ms(h.pct(lats, 99.9)),
            "max_ms": ms(max(lats)) if lats else None,
            "over_target": sum(1 for v in lats if v * 1e3 > TARGET_MS)}


def report(mode, res, fmt):
    s = res["settings"]
    L = [f"## Writes beside pool-wide work ({s['snapshots']} snapshots, a snapshot holding "
         f"{s['big'] // MiB} MiB alone)\n",
         "One fio job writes 4 KiB at random offsets of disk A (QD1, libaio, direct=1) through every window, "
         "each window with one activity on other objects of the same pool; every write's latency is logged, "
         "and a write counts in each window its time in flight overlaps. The quiet window (background "
         "commits only, every 5 s) is the baseline; the last row is the same writer on a plain file of the "
         "host filesystem, after the pool is unmounted (this machine's own floor). Target: no write over 5 ms.\n",
         "| window | activity | activity took | writes | p50 ms | p99 ms | p99.9 ms | max ms | writes > 5 ms | max ≤ 5 ms |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for w in res["windows"]:
        took = (f"{fmt(w['run_median_s'], 2)} s × {w['runs']} (max {fmt(w['run_max_s'], 2)} s)" if w["runs"] > 1
                else f"{fmt(w['run_max_s'], 2)} s")
        ok = "–" if w["max_ms"] is None else ("met" if w["max_ms"] <= TARGET_MS else "**missed**")
        L.append(f"| {w['window']} | {w['activity']} | {took} | {w['writes']} | {fmt(w['p50_ms'], 2)} | "
                 f"{fmt(w['p99_ms'], 2)} | {fmt(w['p999_ms'], 2)} | {fmt(w['max_ms'], 1)} | {w['over_target']} | {ok} |")
    st = res["setup_seconds"]
    L.append(f"\nSet-up: disks {fmt(st['disks'], 0)} s, {s['snapshots']} snapshots {fmt(st['snapshots'], 0)} s; "
             f"windows {fmt(res['windows_seconds'], 0)} s. big@old held {fmt(res['exclusive_bytes_old'] / MiB, 0)} MiB "
             "alone before its rmdir.\n")
    return L
