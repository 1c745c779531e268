"""Checks that a llama-server runs a quantized model on this machine: starts it on MODEL
at a small context, waits for /health, asks for a few tokens and checks the server's own
count of what it generated. Exit 0 and one line on stdout when it did; otherwise exit 1
and why on stderr (the signal that killed it, with its log's last lines).

    python3 check-llama-server.py BINARY MODEL
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HEALTH_TIMEOUT_S = 120
SIGNALS = {
    signal.SIGILL: "an illegal instruction (SIGILL): this build uses CPU instructions this machine lacks",
    signal.SIGBUS: "a bus error (SIGBUS)",
    signal.SIGSEGV: "a segmentation fault (SIGSEGV)",
    signal.SIGABRT: "an abort (SIGABRT)",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(binary, model):
    port = free_port()
    env = dict(os.environ)
    folder = os.path.dirname(binary)
    env["LD_LIBRARY_PATH"] = folder + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    command = [binary, "-m", model, "-c", "512", "-np", "1", "-t", str(os.cpu_count() or 1),
               "-fit", "off", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            why = exercise(server, port)
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        if why is None:
            return 0
        log.seek(0)
        tail = log.read().decode(errors="replace").splitlines()[-12:]
        print(f"{binary} cannot run {os.path.basename(model)}: {why}", file=sys.stderr)
        for line in tail:
            print(f"  | {line}", file=sys.stderr)
        return 1


def exercise(server, port):
    """None when the server generated tokens, else why not."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while True:
        if server.poll() is not None:
            return died(server)
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            return f"not healthy within {HEALTH_TIMEOUT_S} s"
        time.sleep(0.2)
    body = json.dumps({"prompt": "The capital of France is", "n_predict": 4,
                       "ignore_eos": True, "cache_prompt": False}).encode()
    request = urllib.request.Request(base + "/completion", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            answer = json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as e:
        time.sleep(0.3)
        return died(server) if server.poll() is not None else f"the completion failed: {e}"
    generated = answer.get("tokens_predicted") or answer.get("timings", {}).get("predicted_n") or 0
    if generated < 1:
        return f"it answered but generated nothing: {json.dumps(answer)[:200]}"
    speed = answer.get("timings", {}).get("predicted_per_second")
    print(f"ok: {generated} tokens" + (f" at {speed:.1f} tok/s" if speed else ""))
    return None


def died(server):
    code = server.returncode
    if code < 0:
        return "it died of " + SIGNALS.get(-code, f"signal {-code}")
    return f"it exited with code {code}"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
