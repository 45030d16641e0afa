#!/usr/bin/env python3
"""Instructions per request of one or two candor binaries, counted by callgrind: the A/B that
stays precise on a noisy host, where run.py's CPU time per request varies by 20 % a round.

    cargo build --release
    benches/compare/instructions.py                                   # target/release/candor
    benches/compare/instructions.py --candor OLD --candor-b NEW       # A/B of a change
    benches/compare/instructions.py --candor-b-env CANDOR__AUDIT__ENABLED=true   # of a setting

For each binary and route it starts the comparison's nginx origin (as run.py does) and candor
under `valgrind --tool=callgrind` with benches/compare/conf/candor.toml, warms up with
`wrk -t1 -c4` for 2 s, zeroes the counters, loads it 4 s more, and divides the instructions of
that span by the requests candor counted in it (`candor_requests_total`). The same binary and
inputs give the same count to within a few hundred instructions a request.
"""
import argparse
import glob
import os
import pwd
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the comparison's templates and helpers)

ORIGIN, LISTEN, ADMIN = 18180, 18183, 18193


def requests(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(n) for n in re.findall(r"^candor_requests_total\{[^}]*\} (\S+)", text, re.M))


def measure(binary, route, out_dir, extra_env=None, tag="", config=None):
    out = Path(out_dir) / f"callgrind.{Path(binary).name}{tag}.{route.strip('/')}"
    env = dict(os.environ, CANDOR__SERVER__LISTEN=f"127.0.0.1:{LISTEN}",
               CANDOR__SERVER__ADMIN_LISTEN=f"127.0.0.1:{ADMIN}",
               CANDOR__UPSTREAM__URL=f"http://127.0.0.1:{ORIGIN}", RUST_LOG="info",
               **(extra_env or {}))
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary),
                             "run", "--config", str(config or run.HERE / "conf" / "candor.toml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        load = ["wrk", "-t1", "-c4", "-H", "Accept: application/json", f"http://127.0.0.1:{LISTEN}{route}"]
        subprocess.run(load[:3] + ["-d2s"] + load[3:], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        before = requests(ADMIN)
        subprocess.run(load[:3] + ["-d4s"] + load[3:], capture_output=True, check=True)
        # The scrape after the load is one more request.
        served = requests(ADMIN) - before - 1
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait()
    dump = sorted(glob.glob(f"{out}.*"))[0]
    total = int(re.search(r"^(?:summary|totals): (\d+)", Path(dump).read_text(), re.M).group(1))
    return total / served


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candor", default=str(run.REPO / "target/release/candor"))
    ap.add_argument("--candor-b", default=None, help="a second binary: prints b / a per route")
    ap.add_argument("--candor-b-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment setting for b only (repeatable); without --candor-b, b is "
                         "the same binary: the A/B of a config key, e.g. CANDOR__AUDIT__ENABLED=true")
    ap.add_argument("-p", "--routes", default="/ok /err /big")
    ap.add_argument("--candor-config", default=str(run.HERE / "conf" / "candor.toml"),
                    help="the config both binaries run with")
    ap.add_argument("--port-offset", type=int, default=0,
                    help="added to the origin, listen and admin ports, so two runs can share a host")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="keep the callgrind dumps in DIR (for callgrind_annotate)")
    cfg = ap.parse_args()
    global ORIGIN, LISTEN, ADMIN
    ORIGIN, LISTEN, ADMIN = ORIGIN + cfg.port_offset, LISTEN + cfg.port_offset, ADMIN + cfg.port_offset
    if any("=" not in kv for kv in cfg.candor_b_env):
        ap.error("--candor-b-env takes KEY=VALUE")
    env_b = dict(kv.split("=", 1) for kv in cfg.candor_b_env)
    if env_b and not cfg.candor_b:
        cfg.candor_b = cfg.candor
    for tool in ("valgrind", "callgrind_control", "wrk", "nginx"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"missing {tool}: apt-get install -y valgrind wrk nginx")
    binaries = [cfg.candor] + ([cfg.candor_b] if cfg.candor_b else [])
    with tempfile.TemporaryDirectory(prefix="candor-instructions-") as tmp:
        run_dir = Path(tmp)
        (run_dir / "tmp").mkdir()
        www = run.HERE / "www"
        run.ensure_www(www)
        values = {"RUN": run_dir, "WWW": www, "USER": pwd.getpwuid(os.getuid()).pw_name,
                  "ORIGIN_PORT": ORIGIN, "NGINX_PORT": ORIGIN + 1, "HAPROXY_PORT": ORIGIN + 2}
        conf = run.render("nginx-origin.conf", run_dir / "nginx-origin.conf", values)
        origin = subprocess.Popen(["nginx", "-p", f"{run_dir}/", "-c", str(conf), "-g", "daemon off;"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            for route in cfg.routes.split():
                counts = [measure(b, route, cfg.keep or tmp, env_b if i else None, f".{i}",
                                  cfg.candor_config)
                          for i, b in enumerate(binaries)]
                line = f"{route}: " + " / ".join(f"{c:,.0f}" for c in counts) + " instructions per request"
                if len(counts) == 2:
                    line += f"; b / a = {counts[1] / counts[0]:.4f}"
                print(line, flush=True)
        finally:
            origin.terminate()
            origin.wait()


if __name__ == "__main__":
    main()
