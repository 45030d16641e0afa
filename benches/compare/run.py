#!/usr/bin/env python3
"""Side-by-side load comparison: candor against nginx and HAProxy, one worker each.

    cargo build --release
    benches/compare/run.py                      # defaults: 8 rounds x 1 s, about 2 minutes
    benches/compare/run.py -r 2 -d 1            # a quick look (about 45 s)
    benches/compare/run.py --tls                # the same, each proxy terminating TLS

What it does, in one run:

1. Starts an nginx origin (1 worker, cpu 0) serving /ok, /err, /html404, /big and /huge, then
   nginx as a reverse proxy (1 worker, HTTP/1.1 upstream keep-alive), HAProxy (nbthread 1,
   http-reuse safe) and candor (`target/release/candor run --config conf/candor.toml`: the
   defaults, one worker, one JSON rule), each pinned to cpu 1. It refuses to start when a port
   is taken and waits until each one answers.
2. Smoke test: status, content type and size of every route through every proxy, with
   `Accept: application/json`; candor must answer /err and /html404 with a 404 problem+json and
   pass everything else through byte for byte.
3. Memory: the RSS one 10 MiB /huge response adds, and the RSS 1,000 idle keep-alive connections
   add (each opened, one request on it, then held), read from /proc.
4. Load: paired, interleaved rounds, the order of the proxies
   rotated every round; `wrk -t1 -c64` on cpu 0 with the origin, the proxy under test alone on
   cpu 1. Proxy CPU per request = busy jiffies of cpu 1 (user, nice, system, irq, softirq from
   /proc/stat) / requests. The ratio to nginx is the median of the per-round ratios, so slow
   phases of a shared host cancel out. Before each /big run the peak-RSS counter is reset
   (`echo 5 > /proc/PID/clear_refs`) and VmHWM read afterwards.
5. Prints the versions, the table and the issue's targets (pass/fail), and writes table.md,
   raw.tsv, memory.tsv, smoke.txt, the wrk outputs and every log to the output directory
   (default target/bench-compare/<timestamp>/).

With --tls each proxy terminates TLS with the same certificate (an ECDSA P-256 pair that
`openssl req -x509` makes in the output directory; TLS 1.2 and 1.3, the proxies' default suites)
and wrk, this script's clients and the smoke test speak https to it over keep-alive
connections; the origin stays plaintext. The ratios to nginx are then TLS against TLS: put them
beside a plaintext run's.

It stops everything it started on exit, on error and on Ctrl-C: SIGTERM to the process group of
each process it launched (each in its own session), SIGKILL after a grace period. It never kills
by name. Only the Python standard library, nginx, haproxy, wrk and taskset are needed.
"""

import argparse
import datetime
import hashlib
import http.client
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
ROUTES = ["/ok", "/err", "/html404", "/big"]
ALL_ROUTES = ROUTES + ["/huge"]
ACCEPT = "application/json"
PROBLEM = "application/problem+json"

# The performance targets (benches/README.md), checked against candor's figures.
CPU_TARGET = {"/ok": 0.95, "/err": 1.0, "/html404": 1.0, "/big": 1.0}
RPS_MIN = 0.90  # throughput within 10 % of nginx's
BIG_PEAK_MIB = 12.0
HUGE_ADDED_MIB = 2.0
IDLE_ADDED_MIB = 20.0


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A condition the run cannot continue past; the message says which."""


# ---------------------------------------------------------------- processes we started


class Started:
    """Every process this script launched, each in its own session (process group = its pid)."""

    def __init__(self):
        self.procs = []  # (name, Popen)

    def launch(self, name, argv, logfile, env=None):
        out = open(logfile, "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        out.close()
        self.procs.append((name, proc))
        return proc

    def stop_all(self, grace=5.0):
        # A second Ctrl-C must not cut the cleanup short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._stop(grace)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop(self, grace):
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + grace
        for name, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {proc.pid}) ignored SIGTERM, sending SIGKILL to its group")
            # Workers (nginx) live in the same process group; make sure none outlives its master.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def children(pid):
    """The pid and its direct children (nginx's worker), from /proc."""
    out = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return out


def port_taken(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        sock.close()


# Ports that speak TLS (the proxies under --tls), and the client context for them: the
# certificate is this run's own, so it is not verified.
TLS_PORTS = set()
TLS_CONTEXT = None


def connection(port, timeout):
    if port in TLS_PORTS:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=TLS_CONTEXT)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def get(port, path, timeout=10.0, digest=False):
    """One GET with `Accept: application/json`: (status, content type, bytes, sha256 or body)."""
    conn = connection(port, timeout)
    try:
        conn.request("GET", path, headers={"Accept": ACCEPT})
        resp = conn.getresponse()
        if digest:
            sha, size = hashlib.sha256(), 0
            while chunk := resp.read(65536):
                sha.update(chunk)
                size += len(chunk)
            body = sha.hexdigest()
        else:
            raw = resp.read()
            size, body = len(raw), raw
        return resp.status, resp.getheader("Content-Type", ""), size, body
    finally:
        conn.close()


def wait_ready(name, port, proc, logfile, seconds=20.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = Path(logfile).read_text(errors="replace")[-2000:]
            raise Failed(f"{name} exited during start-up (status {proc.returncode}); log {logfile}:\n{tail}")
        try:
            status, _, _, _ = get(port, "/ok", timeout=1.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise Failed(f"{name} did not answer GET /ok with 200 on port {port} within {seconds:.0f} s")


# ---------------------------------------------------------------- /proc readings


def core_stat(cpu):
    """(busy, steal, total) jiffies of one cpu; busy = user + nice + system + irq + softirq."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return v[0] + v[1] + v[2] + v[5] + v[6], v[7], sum(v)
    raise Failed(f"cpu{cpu} not in /proc/stat")


def proc_ticks(pids):
    """(utime + stime, utime) ticks of the pids together."""
    total = user = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            user += int(fields[11])
        except (OSError, IndexError, ValueError):
            pass
    return total, user


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pids):
    return sum(status_kb(pid, "VmRSS") for pid in pids)


def reset_hwm(pids):
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError as err:
            raise Failed(f"cannot reset the peak RSS of pid {pid} ({err}); run as root or as its owner")


def hwm_kb(pids):
    """The largest VmHWM among the pids (nginx: its worker)."""
    return max(status_kb(pid, "VmHWM") for pid in pids)


# ---------------------------------------------------------------- origin data


def big_json():
    """Exactly 65,536 bytes of JSON, the same bytes on every machine."""
    target = 65536
    s = '{"status":"ok","code":0,"items":['
    i = 0
    while True:
        item = ('{"id":%d,"name":"item-%05d","active":%s,"score":%d.%02d,"tags":["alpha","beta"]}'
                % (i, i, "true" if i % 2 else "false", i % 100, i % 97))
        if len(s) + len(item) + 1 > target - 64:
            break
        s += ("," if i else "") + item
        i += 1
    s += '],"pad":"'
    s += "x" * (target - len(s) - 2) + '"}'
    data = s.encode()
    assert len(data) == target
    return data


def huge_bin():
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\n"
    size = 10 * 1024 * 1024
    return (line * (size // len(line) + 1))[:size]


def ensure_www(www):
    for name, make in (("big.json", big_json), ("huge.bin", huge_bin)):
        path = www / name
        data = None
        if path.exists():
            data = path.read_bytes()
            if data != make():
                log(f"{path} differs from what this script generates; regenerating")
                data = None
        if data is None:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(make())
            tmp.replace(path)
    if not (www / "html404.html").is_file():
        raise Failed(f"missing {www / 'html404.html'} (it is part of the repository)")


# ---------------------------------------------------------------- wrk


def to_ms(token):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", token)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(out):
    def find(pattern, cast=float, default=0):
        m = re.search(pattern, out)
        return cast(m.group(1)) if m else default

    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    secs = to_ms(m.group(2) + m.group(3)) / 1000 if m else float("nan")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(m.group(1)) if m else 0,
        "secs": secs,
        "rps": find(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": to_ms(lat.get("50", "")),
        "p99_ms": to_ms(lat.get("99", "")),
        "non2xx": find(r"Non-2xx or 3xx responses: (\d+)", int),
        "errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def wrk(cfg, port, path, secs, latency=True):
    argv = ["taskset", "-c", str(cfg.loadgen_cpu), "wrk", "-t1", f"-c{cfg.conns}", f"-d{secs}s",
            "-H", f"Accept: {ACCEPT}"]
    if latency:
        argv.append("--latency")
    scheme = "https" if port in TLS_PORTS else "http"
    argv.append(f"{scheme}://127.0.0.1:{port}{path}")
    return subprocess.run(argv, capture_output=True, text=True).stdout


# ---------------------------------------------------------------- memory figures


def huge_added(target):
    """RSS one /huge response adds: peak during the download minus the RSS just before."""
    time.sleep(0.3)
    before = {pid: status_kb(pid, "VmRSS") for pid in target.pids}
    reset_hwm(target.pids)
    status, ctype, size, digest = get(target.port, "/huge", timeout=30.0, digest=True)
    added = max(status_kb(pid, "VmHWM") - before[pid] for pid in target.pids)
    return (status, ctype, size, digest), sum(before.values()), added


def idle_added(target, count):
    """RSS `count` idle keep-alive connections add: each opened, one GET /ok on it, then held."""
    time.sleep(0.3)
    before = rss_kb(target.pids)
    conns, ok = [], 0
    try:
        for _ in range(count):
            conn = connection(target.port, 10.0)
            conn.request("GET", "/ok", headers={"Accept": ACCEPT})
            resp = conn.getresponse()
            resp.read()
            ok += resp.status == 200 and not resp.will_close
            conns.append(conn)
        time.sleep(0.5)
        after = rss_kb(target.pids)
        # Still open? One more request on a sample of them (not counted in the RSS reading).
        alive = 0
        for conn in conns[:: max(1, count // 20)]:
            try:
                conn.request("GET", "/ok", headers={"Accept": ACCEPT})
                resp = conn.getresponse()
                resp.read()
                alive += resp.status == 200
            except OSError:
                pass
    finally:
        for conn in conns:
            conn.close()
    return before, after, ok, alive, len(conns[:: max(1, count // 20)])


# ---------------------------------------------------------------- the run


class Target:
    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc
        self.pids = children(proc.pid)


def versions(cfg):
    def first_line(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unavailable"

    commit = first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    return [
        f"date:    {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"host:    nproc {os.cpu_count()}, kernel {platform.release()}, load average "
        f"{' '.join(open('/proc/loadavg').read().split()[:3])}",
        f"nginx:   {first_line(['nginx', '-v']).replace('nginx version: ', '')}",
        f"haproxy: {first_line(['haproxy', '-v'])}",
        f"candor:  {first_line([str(cfg.candor), '--version'])} ({cfg.candor}, commit {commit})",
        f"wrk:     {first_line(['wrk', '-v'])}",
    ]


def stale_binary(binary):
    newest = max((p.stat().st_mtime for p in (REPO / "src").rglob("*.rs")), default=0)
    for extra in ("Cargo.toml", "Cargo.lock"):
        if (REPO / extra).exists():
            newest = max(newest, (REPO / extra).stat().st_mtime)
    return binary.stat().st_mtime < newest


def render(template, out, values):
    text = (HERE / "conf" / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    if "@" in re.sub(r"#.*", "", text):
        raise Failed(f"unfilled placeholder in {template}")
    out.write_text(text)
    return out


def tls_files(run_dir):
    """The run's certificate: an ECDSA P-256 pair for 127.0.0.1, and both in one file (HAProxy)."""
    global TLS_CONTEXT
    import ssl
    cert, key, both = run_dir / "tls-cert.pem", run_dir / "tls-key.pem", run_dir / "tls-both.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-nodes", "-days", "7", "-subj", "/CN=127.0.0.1",
                           "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise Failed(f"openssl could not make the run's certificate:\n{made.stderr}")
    both.write_text(cert.read_text() + key.read_text())
    TLS_CONTEXT = ssl.create_default_context()
    TLS_CONTEXT.check_hostname = False
    TLS_CONTEXT.verify_mode = ssl.CERT_NONE
    return {"cert": cert, "key": key, "both": both}


def nginx_tls(text, port, tls):
    """nginx-proxy.conf with its listener on TLS (TLS 1.2 and 1.3, nginx's default suites)."""
    listen = f"listen 127.0.0.1:{port} backlog=4096;"
    if listen not in text:
        raise Failed("nginx-proxy.conf: its listen line changed; update nginx_tls in run.py")
    return text.replace(listen, f"listen 127.0.0.1:{port} ssl backlog=4096;\n"
                                f"        ssl_certificate {tls['cert']};\n"
                                f"        ssl_certificate_key {tls['key']};\n"
                                "        ssl_protocols TLSv1.2 TLSv1.3;")


def haproxy_tls(text, port, tls):
    """haproxy.cfg with its frontend on TLS (ALPN http/1.1: wrk speaks HTTP/1.1)."""
    bind = f"bind 127.0.0.1:{port} backlog 4096"
    if bind not in text:
        raise Failed("haproxy.cfg: its bind line changed; update haproxy_tls in run.py")
    return text.replace(bind, f"{bind} ssl crt {tls['both']} alpn http/1.1 ssl-min-ver TLSv1.2")


def start(cfg, started, run_dir):
    ports = {"origin": cfg.port_base, "nginx": cfg.port_base + 1, "haproxy": cfg.port_base + 2,
             "candor": cfg.port_base + 3, "candor admin": cfg.port_base + 13,
             "candor-b": cfg.port_base + 4, "candor-b admin": cfg.port_base + 14}
    wanted = ["origin", "nginx"] + [t for t in ("haproxy", "candor") if t not in cfg.skip]
    if "candor" in wanted:
        wanted.append("candor admin")
    if cfg.candor_b:
        wanted += ["candor-b", "candor-b admin"]
    taken = [f"{name} :{ports[name]}" for name in wanted if port_taken(ports[name])]
    if taken:
        raise Failed(f"port(s) already in use: {', '.join(taken)} (another run, or pick --port-base)")
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    values = {"RUN": run_dir, "WWW": cfg.www, "USER": pwd.getpwuid(os.getuid()).pw_name,
              "ORIGIN_PORT": ports["origin"], "NGINX_PORT": ports["nginx"],
              "HAPROXY_PORT": ports["haproxy"]}
    lg, px = ["taskset", "-c", str(cfg.loadgen_cpu)], ["taskset", "-c", str(cfg.proxy_cpu)]
    tls = tls_files(run_dir) if cfg.tls else None

    def nginx(conf):
        path = render(conf, run_dir / conf, values)
        if tls and conf == "nginx-proxy.conf":
            path.write_text(nginx_tls(path.read_text(), ports["nginx"], tls))
        return ["nginx", "-p", f"{run_dir}/", "-c", str(path), "-e", str(run_dir / "nginx-startup.log"),
                "-g", "daemon off;"]

    candor_env = dict(os.environ,
                      CANDOR__SERVER__LISTEN=f"127.0.0.1:{ports['candor']}",
                      CANDOR__SERVER__ADMIN_LISTEN=f"127.0.0.1:{ports['candor admin']}",
                      CANDOR__UPSTREAM__URL=f"http://127.0.0.1:{ports['origin']}")
    if tls:
        candor_env.update(CANDOR__SERVER__TLS__CERT=str(tls["cert"]), CANDOR__SERVER__TLS__KEY=str(tls["key"]))
        TLS_PORTS.update(ports[name] for name in ("nginx", "haproxy", "candor", "candor-b"))
    if "candor" in wanted:
        check = subprocess.run([str(cfg.candor), "check", "--config", str(cfg.candor_config)],
                               capture_output=True, text=True, env=candor_env)
        if check.returncode != 0:
            raise Failed(f"candor check --config {cfg.candor_config} failed:\n{check.stdout}{check.stderr}")
        log(f"candor check: {check.stdout.strip()}")

    plan = [("origin", lg + nginx("nginx-origin.conf"), None),
            ("nginx", px + nginx("nginx-proxy.conf"), None)]
    if "haproxy" in wanted:
        cfg_path = render("haproxy.cfg", run_dir / "haproxy.cfg", values)
        if tls:
            cfg_path.write_text(haproxy_tls(cfg_path.read_text(), ports["haproxy"], tls))
        plan.append(("haproxy", px + ["haproxy", "-db", "-f", str(cfg_path)], None))
    if "candor" in wanted:
        plan.append(("candor", px + [str(cfg.candor), "run", "--config", str(cfg.candor_config)], candor_env))
    if cfg.candor_b:
        env_b = dict(candor_env,
                     CANDOR__SERVER__LISTEN=f"127.0.0.1:{ports['candor-b']}",
                     CANDOR__SERVER__ADMIN_LISTEN=f"127.0.0.1:{ports['candor-b admin']}",
                     **cfg.candor_b_env)
        plan.append(("candor-b", px + [str(cfg.candor_b), "run", "--config", str(cfg.candor_config)], env_b))

    targets = []
    for name, argv, env in plan:
        logfile = run_dir / f"{name}.log"
        proc = started.launch(name, argv, logfile, env)
        wait_ready(name, ports[name], proc, logfile)
        time.sleep(0.2)  # let nginx's worker appear before its pid is recorded
        target = Target(name, ports[name], proc)
        log(f"started {name} on :{target.port}, pids {target.pids}")
        targets.append(target)
    return targets[0], targets[1:]


def smoke(origin, proxies, run_dir):
    """Status, type and size of each route through each proxy; returns the problems found."""
    expected = {}
    for path in ROUTES:
        expected[path] = get(origin.port, path)
    lines, problems = [], []
    header = f"{'target':8} " + " ".join(f"{p:>30}" for p in ROUTES)
    lines.append(header)
    for target in [origin] + proxies:
        cells = []
        for path in ROUTES:
            status, ctype, size, body = get(target.port, path)
            cells.append(f"{status} {ctype.split(';')[0]} {size}B")
            o_status, o_ctype, _, o_body = expected[path]
            rewrite = target.name.startswith("candor") and path in ("/err", "/html404")
            if rewrite:
                if status != 404 or not ctype.startswith(PROBLEM):
                    problems.append(f"{target.name} {path}: {status} {ctype}, expected 404 {PROBLEM}")
            elif status != o_status or body != o_body:
                problems.append(f"{target.name} {path}: {status} {ctype} {size} B, "
                                f"expected the origin's {o_status} {o_ctype} {len(o_body)} B unchanged")
        lines.append(f"{target.name:8} " + " ".join(f"{c:>30}" for c in cells))
    text = "\n".join(lines)
    (run_dir.parent / "smoke.txt").write_text(text + "\n" + "".join(f"UNEXPECTED: {p}\n" for p in problems))
    return text, problems


def median(xs):
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def fmt(x, spec):
    return "-" if x is None or x != x else format(x, spec)


def verdict(ok):
    return "pass" if ok else "FAIL"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Environment: ROUNDS, DURATION, ROUTES, SKIP and OUT_DIR set the defaults "
                                        "of the matching flags.")
    env = os.environ.get
    ap.add_argument("-r", "--rounds", type=int, default=int(env("ROUNDS", 8)),
                    help="interleaved rounds (default 8); ratios are medians of per-round ratios")
    ap.add_argument("-d", "--duration", type=int, default=int(env("DURATION", 1)),
                    help="seconds per wrk run (default 1)")
    ap.add_argument("-p", "--routes", default=env("ROUTES", " ".join(ROUTES)),
                    help=f"routes under load, space separated (default \"{' '.join(ROUTES)}\"; /huge also allowed)")
    ap.add_argument("-s", "--skip", default=env("SKIP", ""),
                    help="targets to leave out, space separated: haproxy, candor (nginx is the baseline)")
    ap.add_argument("-o", "--out", default=env("OUT_DIR"),
                    help="output directory (default target/bench-compare/<timestamp>)")
    ap.add_argument("-w", "--warmup", type=int, default=1, help="seconds of warm-up per target and route (default 1)")
    ap.add_argument("-c", "--conns", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--idle-conns", type=int, default=1000, help="idle keep-alive connections held (default 1000)")
    ap.add_argument("--no-memory", action="store_true", help="skip the /huge and idle-connection measurements")
    ap.add_argument("--tls", action="store_true",
                    help="each proxy terminates TLS (same certificate, keep-alive); the origin stays plaintext")
    ap.add_argument("--candor", default=str(REPO / "target/release/candor"), help="the candor binary")
    ap.add_argument("--candor-b", default=None,
                    help="a second candor binary, measured alongside as candor-b (A/B of a change)")
    ap.add_argument("--candor-b-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment setting for candor-b only (repeatable): A/B of a config key on "
                         "one binary, e.g. --candor-b-env CANDOR__AUDIT__ENABLED=true; without "
                         "--candor-b, candor-b is the same binary as candor")
    ap.add_argument("--candor-config", default=str(HERE / "conf/candor.toml"), help="candor's config")
    ap.add_argument("--loadgen-cpu", type=int, default=0, help="cpu for wrk, the origin and this script (default 0)")
    ap.add_argument("--proxy-cpu", type=int, default=1, help="cpu for the proxy under test (default 1)")
    ap.add_argument("--port-base", type=int, default=18180,
                    help="origin port; nginx +1, haproxy +2, candor +3, candor admin +13 (default 18180)")
    cfg = ap.parse_args()
    cfg.skip = set(cfg.skip.split())
    cfg.routes = cfg.routes.split()
    unknown = cfg.skip - {"haproxy", "candor"}
    if unknown:
        ap.error(f"--skip takes haproxy and/or candor, not {' '.join(sorted(unknown))}")
    bad = [r for r in cfg.routes if r not in ALL_ROUTES]
    if bad or not cfg.routes:
        ap.error(f"unknown route(s) {' '.join(bad)}; choose from {' '.join(ALL_ROUTES)}")
    if cfg.rounds < 1 or cfg.duration < 1:
        ap.error("--rounds and --duration must be at least 1")
    if cfg.loadgen_cpu == cfg.proxy_cpu:
        ap.error("--loadgen-cpu and --proxy-cpu must differ: the proxy's core is measured on its own")
    cfg.candor = Path(cfg.candor).resolve()
    cfg.candor_b = Path(cfg.candor_b).resolve() if cfg.candor_b else None
    bad_env = [kv for kv in cfg.candor_b_env if "=" not in kv]
    if bad_env:
        ap.error(f"--candor-b-env takes KEY=VALUE, not {' '.join(bad_env)}")
    cfg.candor_b_env = dict(kv.split("=", 1) for kv in cfg.candor_b_env)
    if cfg.candor_b_env and not cfg.candor_b:
        cfg.candor_b = Path(cfg.candor).resolve()
    if cfg.candor_b and "candor" in cfg.skip:
        ap.error("--candor-b is measured against candor: do not skip candor")
    cfg.candor_config = Path(cfg.candor_config).resolve()
    cfg.www = HERE / "www"

    for tool in ("nginx", "haproxy", "wrk", "taskset") + (("openssl",) if cfg.tls else ()):
        if not shutil.which(tool) and not (tool == "haproxy" and "haproxy" in cfg.skip):
            raise Failed(f"missing {tool}: apt-get install -y nginx haproxy wrk util-linux")
    if "candor" not in cfg.skip:
        if not cfg.candor.is_file():
            raise Failed(f"missing {cfg.candor}: run `cargo build --release` first")
        if stale_binary(cfg.candor):
            log(f"WARNING: {cfg.candor} is older than the sources; `cargo build --release` to measure them")
    for cpu in (cfg.loadgen_cpu, cfg.proxy_cpu):
        if cpu not in os.sched_getaffinity(0):
            raise Failed(f"cpu {cpu} is not available to this process")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out).resolve() if cfg.out else REPO / "target" / "bench-compare" / stamp
    run_dir = out / "run"
    wrk_dir = out / "wrk"
    for d in (run_dir, wrk_dir):
        d.mkdir(parents=True, exist_ok=True)
    # This script and its clients share the load generator's core; cpu 1 is the proxy's alone.
    os.sched_setaffinity(0, {cfg.loadgen_cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cfg.idle_conns + 4096
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    header = versions(cfg)
    for line in header:
        print(line, flush=True)
    n_targets = 3 - len(cfg.skip) + (1 if cfg.candor_b else 0)
    estimate = (cfg.rounds * len(cfg.routes) * n_targets * (cfg.duration + 0.1)
                + cfg.warmup * len(cfg.routes) * n_targets + (0 if cfg.no_memory else 4 * n_targets) + 5)
    log(f"{cfg.rounds} rounds x {len(cfg.routes)} routes x {n_targets} proxies x {cfg.duration} s; "
        f"expected duration about {estimate / 60:.1f} min; output {out}")

    ensure_www(cfg.www)
    started = Started()
    try:
        origin, proxies = start(cfg, started, run_dir)
        by_name = {t.name: t for t in proxies}

        # Smoke test.
        smoke_text, problems = smoke(origin, proxies, run_dir)
        print("\nsmoke test (GET with Accept: application/json; status, content type, bytes):")
        print(smoke_text)
        for p in problems:
            print(f"UNEXPECTED: {p}")

        # Memory: one /huge response, then idle keep-alive connections, on fresh processes.
        memory = {t.name: {} for t in proxies}
        if not cfg.no_memory:
            huge_ref = get(origin.port, "/huge", timeout=30.0, digest=True)
            for target in proxies:
                got, base, added = huge_added(target)
                memory[target.name].update(base_kb=base, huge_added_kb=added)
                if got[0] != 200 or got[2:] != huge_ref[2:]:
                    problems.append(f"{target.name} /huge: {got[0]} {got[2]} B, not the origin's 10 MiB body")
                before, after, ok, alive, sampled = idle_added(target, cfg.idle_conns)
                memory[target.name].update(idle_before_kb=before, idle_after_kb=after, idle_ok=ok)
                if ok != cfg.idle_conns or alive != sampled:
                    problems.append(f"{target.name}: {ok} of {cfg.idle_conns} idle connections kept alive after "
                                    f"their request, {alive} of {sampled} sampled still served a second one")
                log(f"{target.name}: /huge adds {added / 1024:.1f} MiB; {cfg.idle_conns} idle connections "
                    f"add {(after - before) / 1024:.1f} MiB ({ok} kept alive)")

        # Warm-up, unmeasured.
        for target in proxies:
            for path in cfg.routes:
                wrk(cfg, target.port, path, cfg.warmup, latency=False)

        # Paired, interleaved rounds.
        rows = []
        raw = open(out / "raw.tsv", "w")
        raw.write("round\ttarget\troute\trequests\tsecs\trps\tp50_ms\tp99_ms\tnon2xx\terrors\t"
                  "proxy_core_busy_pct\tproxy_core_us_per_req\tproxy_process_pct\tproxy_process_us_per_req\tproxy_user_us_per_req\t"
                  "loadgen_core_pct\t"
                  "steal_pct\t"
                  "hwm_kb\n")
        t0 = time.time()
        n = len(proxies)
        for r in range(cfg.rounds):
            for path in cfg.routes:
                for k in range(n):
                    target = proxies[(k + r) % n]
                    if path == "/big":
                        reset_hwm(target.pids)
                    x0, l0, p0 = core_stat(cfg.proxy_cpu), core_stat(cfg.loadgen_cpu), proc_ticks(target.pids)
                    out_text = wrk(cfg, target.port, path, cfg.duration)
                    x1, l1, p1 = core_stat(cfg.proxy_cpu), core_stat(cfg.loadgen_cpu), proc_ticks(target.pids)
                    (wrk_dir / f"r{r + 1}-{target.name}-{path.strip('/')}.txt").write_text(out_text)
                    w = parse_wrk(out_text)
                    busy, xtotal = x1[0] - x0[0], max(1, x1[2] - x0[2])
                    ltotal = max(1, l1[2] - l0[2])
                    row = dict(round=r + 1, target=target.name, route=path, **w,
                               core_pct=100 * busy / xtotal,
                               us=busy / CLK_TCK * 1e6 / w["requests"] if w["requests"] else float("nan"),
                               proc_us=(p1[0] - p0[0]) / CLK_TCK * 1e6 / w["requests"] if w["requests"] else float("nan"),
                               user_us=(p1[1] - p0[1]) / CLK_TCK * 1e6 / w["requests"] if w["requests"] else float("nan"),
                               proc_pct=100 * (p1[0] - p0[0]) / xtotal,
                               lg_pct=100 * (l1[0] - l0[0]) / ltotal,
                               steal=100 * max((x1[1] - x0[1]) / xtotal, (l1[1] - l0[1]) / ltotal),
                               hwm=hwm_kb(target.pids) if path == "/big" else None)
                    rows.append(row)
                    raw.write("\t".join(str(row[key]) if not isinstance(row[key], float) else f"{row[key]:.3f}" for key in (
                        "round", "target", "route", "requests", "secs", "rps", "p50_ms", "p99_ms", "non2xx",
                        "errors", "core_pct", "us", "proc_pct", "proc_us", "user_us", "lg_pct", "steal")) + f"\t{row['hwm'] or '-'}\n")
                    raw.flush()
                    if w["requests"] == 0:
                        problems.append(f"{target.name} {path} round {r + 1}: wrk made no requests")
            log(f"round {r + 1}/{cfg.rounds} done ({time.time() - t0:.0f} s)")
        raw.close()
    finally:
        log("stopping everything this run started")
        started.stop_all()

    # ---------------------------------------------------------------- report
    names = [t.name for t in proxies]
    cell = {}
    for row in rows:
        cell.setdefault((row["target"], row["route"]), []).append(row)

    def ratios(name, path, key):
        base = {row["round"]: row[key] for row in cell[("nginx", path)]}
        return [row[key] / base[row["round"]] for row in cell[(name, path)] if base.get(row["round"])]

    md = []
    md.append("```")
    md += header
    md.append(f"{'TLS (https to each proxy, same ECDSA P-256 certificate, keep-alive)' if cfg.tls else 'plaintext'}: "
              f"wrk -t1 -c{cfg.conns} -d{cfg.duration}s -H 'Accept: {ACCEPT}', {cfg.rounds} interleaved round(s); "
              f"wrk + origin on cpu {cfg.loadgen_cpu}, proxy under test alone on cpu {cfg.proxy_cpu}")
    md.append("```")
    md.append("")
    md.append("CPU µs/req = busy jiffies of the proxy's core per request (median over rounds); × nginx = median of "
              "the per-round ratios (min–max). process µs/req = the proxy's own utime + stime per request: it "
              "leaves out softirq work done on its behalf, and also anything else that ran on its core. The "
              "targets apply to candor (benches/README.md).")
    md.append("")
    md.append("| route | proxy | CPU µs/req | × nginx CPU | process µs/req | req/s | × nginx req/s | p50 ms | p99 ms "
              "| non-2xx / errors | CPU target | req/s target |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    verdicts = []
    for path in cfg.routes:
        for name in names:
            rs = cell[(name, path)]
            us, rps = median([x["us"] for x in rs]), median([x["rps"] for x in rs])
            if name == "nginx":
                cpu_r = rps_r = "1"
            else:
                cr, rr = ratios(name, path, "us"), ratios(name, path, "rps")
                cpu_r = f"{median(cr):.2f} ({min(cr):.2f}–{max(cr):.2f})" if cr else "-"
                rps_r = f"{median(rr):.2f} ({min(rr):.2f}–{max(rr):.2f})" if rr else "-"
            cpu_t = rps_t = ""
            if name == "candor" and path in CPU_TARGET:
                cr, rr = median(ratios(name, path, "us")), median(ratios(name, path, "rps"))
                ok_cpu, ok_rps = cr <= CPU_TARGET[path], rr >= RPS_MIN
                cpu_t = f"≤ {CPU_TARGET[path]:.2f}×: {verdict(ok_cpu)}"
                rps_t = f"≥ {RPS_MIN:.2f}×: {verdict(ok_rps)}"
                verdicts += [(f"{path} CPU/req ≤ {CPU_TARGET[path]:.2f}× nginx", f"{cr:.2f}×", ok_cpu),
                             (f"{path} req/s within 10 % of nginx", f"{rr:.2f}×", ok_rps)]
            proc_us = median([x["proc_us"] for x in rs])
            md.append(f"| {path} | {name} | {fmt(us, '.1f')} | {cpu_r} | {fmt(proc_us, '.1f')} | {fmt(rps, '.0f')} | {rps_r} | "
                      f"{fmt(median([x['p50_ms'] for x in rs]), '.2f')} | {fmt(median([x['p99_ms'] for x in rs]), '.2f')} | "
                      f"{sum(x['non2xx'] for x in rs)} / {sum(x['errors'] for x in rs)} | {cpu_t} | {rps_t} |")
    if cfg.candor_b:
        md.append("")
        md.append("A/B (median of the per-round ratios candor-b / candor, min–max):")
        md.append("")
        for path in cfg.routes:
            a_us = {row["round"]: row["us"] for row in cell[("candor", path)]}
            ab = [row["us"] / a_us[row["round"]] for row in cell[("candor-b", path)] if a_us.get(row["round"])]
            if ab:
                md.append(f"- {path}: CPU/req {median(ab):.3f} ({min(ab):.3f}–{max(ab):.3f})")
    md.append("")
    md.append("| proxy | peak RSS, 64 busy conns on /big (MiB) | RSS added by one 10 MiB /huge (MiB) "
              f"| RSS added by {cfg.idle_conns} idle keep-alive conns (MiB) | RSS at rest, all processes (MiB) |")
    md.append("|---|---:|---:|---:|---:|")
    for name in names:
        m = memory[name]
        big = [x["hwm"] for x in cell.get((name, "/big"), []) if x["hwm"]]
        big_mib = max(big) / 1024 if big else None
        huge = m.get("huge_added_kb")
        idle = m["idle_after_kb"] - m["idle_before_kb"] if "idle_after_kb" in m else None
        huge_mib = huge / 1024 if huge is not None else None
        idle_mib = idle / 1024 if idle is not None else None
        cells = [fmt(big_mib, ".1f"), fmt(huge_mib, ".1f"), fmt(idle_mib, ".1f")]
        if name == "candor":
            for i, (value, limit, strict, label) in enumerate((
                    (big_mib, BIG_PEAK_MIB, False, "peak RSS, 64 busy conns on 64 KiB"),
                    (huge_mib, HUGE_ADDED_MIB, True, "RSS added by a 10 MiB response"),
                    (idle_mib, IDLE_ADDED_MIB, True, f"RSS added by {cfg.idle_conns} idle keep-alive conns"))):
                if value is None:
                    continue
                ok = value < limit if strict else value <= limit
                sign = "<" if strict else "≤"
                cells[i] += f" ({sign} {limit:g}: {verdict(ok)})"
                verdicts.append((f"{label} {sign} {limit:g} MiB", f"{value:.1f} MiB", ok))
        md.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(m.get('base_kb', float('nan')) / 1024, '.1f')} |")
    md.append("")
    if verdicts:
        md.append("| target (candor) | measured | pass/fail |")
        md.append("|---|---:|---|")
        for label, value, ok in verdicts:
            md.append(f"| {label} | {value} | {verdict(ok)} |")
        md.append("")
        md.append(f"{sum(ok for _, _, ok in verdicts)} of {len(verdicts)} targets met.")
    steal = max((x["steal"] for x in rows), default=0)
    noisy = [f"r{x['round']} {x['target']} {x['route']}" for x in rows if x["core_pct"] - x["proc_pct"] > 10]
    md.append(f"Steal: at most {steal:.1f} %. Proxy core busier than the proxy process by more than 10 points "
              f"(something else ran there; discount these): {len(noisy)} of {len(rows)} runs"
              + (f": {', '.join(noisy)}" if noisy else "") + ".")
    if cfg.rounds < 6:
        md.append(f"Only {cfg.rounds} round(s): ratios move by ±5-10 % between short runs on a shared host; "
                  "use the default 8 rounds or more before reading the verdicts.")
    for p in problems:
        md.append(f"UNEXPECTED: {p}")
    table = "\n".join(md) + "\n"
    (out / "table.md").write_text(table)
    with open(out / "memory.tsv", "w") as f:
        f.write("target\tbase_rss_kb\thuge_added_kb\tidle_before_kb\tidle_after_kb\tidle_kept_alive\tbig_peak_kb\n")
        for name in names:
            m = memory[name]
            big = [x["hwm"] for x in cell.get((name, "/big"), []) if x["hwm"]]
            f.write("\t".join(str(v) for v in (name, m.get("base_kb", "-"), m.get("huge_added_kb", "-"),
                                               m.get("idle_before_kb", "-"), m.get("idle_after_kb", "-"),
                                               m.get("idle_ok", "-"), max(big) if big else "-")) + "\n")
    print()
    print(table)
    log(f"results in {out} (table.md, raw.tsv, memory.tsv, smoke.txt, wrk/, run/)")
    return 1 if problems else 0


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        sys.exit(main())
    except Failed as err:
        log(f"ERROR: {err}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
