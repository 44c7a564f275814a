"""Bench: `pxetui fetch` (download + SHA-256 verify + marker) against `curl -o` + `sha256sum`.

A third row, `curl -o` alone, is the transfer without any check: the floor for both.

Both fetch the same file from the same nginx, over a veth inside a private lab (198.18.250.0/24,
namespaces created and deleted here), in the same run, alternating. Run as root from the repo:

    sudo .venv/bin/python bench/fetch.py [--size-mb 512] [--rounds 2]

Every command has a time limit; the lab and the files are removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lab import Lab, lab_available  # noqa: E402

PORT = 8098
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {ip}:{port};
        root {root};
    }}
}}
"""


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for i in range(size >> 20):
            chunk = block[i % 251 :] + block[: i % 251]  # varied, cheap to make
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def timed(lab: Lab, netns: str, *cmd: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = lab.exec(netns, *cmd, timeout=180, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-800:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    reason = lab_available()
    if reason or not shutil.which("nginx") or not shutil.which("curl"):
        print(f"cannot run: {reason or 'needs nginx and curl (make deps-test)'}", file=sys.stderr)
        return 2
    size = args.size_mb << 20
    lab = Lab(subnet=ipaddress.IPv4Network("198.18.250.0/24"))
    tmp = Path(tempfile.mkdtemp(prefix="pxetui-bench-fetch-"))
    tmp.chmod(0o755)  # nginx workers run unprivileged
    nginx: subprocess.Popen[str] | None = None
    try:
        lab.build()
        client = lab.add_client(address="198.18.250.10/24")
        root = tmp / "www" / "images"
        root.mkdir(parents=True)
        sha = make_file(root / "big.img", size)
        (root / "SHA256SUMS").write_text(f"{sha}  ./big.img\n")
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(tmp=tmp, ip=lab.server_ip, port=PORT, root=tmp / "www")
        )
        nginx = lab.popen(lab.server_ns, "nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp))
        url = f"http://{lab.server_ip}:{PORT}/images/big.img"
        for _ in range(50):
            if lab.exec(client.netns, "curl", "-sfI", url, timeout=5).returncode == 0:
                break
            time.sleep(0.1)
        profiles = tmp / "profiles"
        profiles.mkdir()
        (profiles / "bench.yaml").write_text(
            f"name: bench\ntitle: Bench\nkernel: {{url: '{url}'}}\n"
            f"sha256sums: http://{lab.server_ip}:{PORT}/images/SHA256SUMS\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        ours: list[float] = []
        peer: list[float] = []
        raw: list[float] = []
        for n in range(args.rounds):
            cache = tmp / f"cache{n}"
            ours.append(
                timed(
                    lab,
                    client.netns,
                    sys.executable,
                    "-m",
                    "pxetui",
                    "fetch",
                    "bench",
                    "--cache",
                    str(cache),
                    "--profiles",
                    str(profiles),
                    env=env,
                )
            )
            if (cache / "bench" / "big.img").stat().st_size != size:
                raise SystemExit("pxetui fetch produced a file of the wrong size")
            shutil.rmtree(cache)
            out = tmp / f"curl{n}.img"
            peer.append(
                timed(
                    lab,
                    client.netns,
                    "sh",
                    "-c",
                    f"curl -sf -o {out} {url} && sha256sum {out} | grep -q {sha}",
                )
            )
            out.unlink()
            raw.append(timed(lab, client.netns, "curl", "-sf", "-o", str(out), url))
            out.unlink()
        mb = size / 1e6
        print(
            f"file: {args.size_mb} MiB over a veth from nginx, download + SHA-256 check, {args.rounds} rounds"
        )
        print(f"{'':28}{'best s':>8}{'MB/s':>8}   all runs (s)")
        rows = (("pxetui fetch", ours), ("curl -o + sha256sum", peer), ("curl -o (no check)", raw))
        for name, runs in rows:
            best = min(runs)
            print(f"{name:28}{best:8.2f}{mb / best:8.0f}   {' '.join(f'{r:.2f}' for r in runs)}")
        print(f"ratio pxetui fetch / (curl -o + sha256sum), best runs: {min(ours) / min(peer):.2f}")
        return 0
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        lab.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
