"""What the Python-run servers (tornado, gevent) share, written into each release by app_server:
the socket systemd passes, readiness for Type=notify, a prefork pool that stops gracefully on
SIGTERM, and the URL prefix nginx forwards. Standard library only."""

import os
import re
import select
import signal
import socket
import sys
import time

SD_LISTEN_FDS_START = 3
# A child that dies within this many seconds of its start is not refilled at once: a crash loop
# waits this long between forks instead of spinning.
REFILL_PAUSE = 1.0


def listen_socket(listen):
    """The socket systemd passed (sd_listen_fds), else bound here as the socket unit would: a unix
    socket with mode 0660, or host:port. Non-blocking, as event loops want it."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    elif listen.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(listen):
            os.unlink(listen)
        umask = os.umask(0o117)
        try:
            sock.bind(listen)
        finally:
            os.umask(umask)
        sock.listen(2048)
    else:
        host, port = listen.rsplit(":", 1)
        sock = socket.create_server((host.strip("[]"), int(port)), backlog=2048, reuse_port=False)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock.setblocking(False)
    return sock


def notify(state):
    """Send a state ("READY=1") to systemd's $NOTIFY_SOCKET; nothing when started by hand."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        sock.sendall(state.encode())


def behind_nginx(app):
    """The WSGI app as nginx hands it requests. nginx sets these headers on every proxied request,
    replacing a client's own (an empty one is not sent): X-Forwarded-Prefix, the app's URL prefix
    (empty at the site root), becomes SCRIPT_NAME and is cut from PATH_INFO, as gunicorn does with
    nginx's SCRIPT_NAME header; X-Real-IP is the client's address (REMOTE_ADDR, not nginx's) and
    X-Forwarded-Proto the scheme it used (wsgi.url_scheme)."""

    def mounted(environ, start_response):
        prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "").rstrip("/")
        path = environ.get("PATH_INFO", "")
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            environ["SCRIPT_NAME"] = prefix
            environ["PATH_INFO"] = path[len(prefix):]
        if environ.get("HTTP_X_REAL_IP"):
            environ["REMOTE_ADDR"] = environ["HTTP_X_REAL_IP"]
        if environ.get("HTTP_X_FORWARDED_PROTO") in ("http", "https"):
            environ["wsgi.url_scheme"] = environ["HTTP_X_FORWARDED_PROTO"]
        return app(environ, start_response)

    return mounted


# One NAME="value" of an EnvironmentFile as python_app writes it (systemd's double-quoted form, a
# backslash before \\ " ` $ escaping it); a value may span lines.
ENV_ASSIGNMENT = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"[ \t]*$', re.M)


def read_env_file(path):
    """The variables of the app's env file, exactly as systemd gives them to a service: for the
    processes that systemd does not start with it (fcgiwrap hands a CGI script only the request's
    variables)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return {name: re.sub(r'\\([\\"`$])', r"\1", value) for name, value in ENV_ASSIGNMENT.findall(text)}


def _log(message):
    print(f"webstack-serve[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def prefork(workers, serve, sock):
    """Run serve(sock, ready) in `workers` forked children and supervise them; returns the exit code.

    Each child calls ready() once it can serve; the parent tells systemd READY=1 when every child
    has, so python_app's restart hand-over ends only when the new pool serves. A child that fails
    before it is ready fails the start (exit 1). Later, a child that dies is replaced. SIGTERM or
    SIGINT to the parent (systemd's stop, KillMode=mixed) goes on to every child, each finishes its
    requests and exits, and the parent exits 0 when the last one has."""
    children = {}
    stopping = []

    def stop(signum, _frame):
        if not stopping:
            stopping.append(signum)
            for pid in list(children):
                _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready_r, ready_w = os.pipe()

    def fork(ready_fd):
        """A child; ready_fd is the pipe it reports readiness on (None for a replacement)."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if ready_fd is not None:
                    os.close(ready_r)
                code = serve(sock, (lambda: os.write(ready_fd, b".")) if ready_fd is not None else (lambda: None))
            except BaseException:  # noqa: BLE001 - a child reports anything and exits
                import traceback

                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code or 0)
        children[pid] = time.monotonic()
        return pid

    for _unused in range(workers):
        fork(ready_w)
    os.close(ready_w)
    ready = 0
    while ready < workers:
        if stopping:
            break
        readable = select.select([ready_r], [], [], 0.2)[0]
        if readable:
            ready += len(os.read(ready_r, workers))
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.pop(pid, None)
            _log(f"a worker ({pid}) failed to start: {_describe(status)}")
            for other in list(children):
                _kill(other, signal.SIGKILL)
            _reap(children)
            os.close(ready_r)
            return 1
    os.close(ready_r)
    if not stopping:
        notify("READY=1")
        _log(f"{workers} worker(s) serving")
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if started is None or stopping:
            continue
        _log(f"worker {pid} exited ({_describe(status)}); starting another")
        if time.monotonic() - started < REFILL_PAUSE:
            time.sleep(REFILL_PAUSE)
        if not stopping:
            fork(None)
    return 0


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reap(children):
    while children:
        try:
            pid = os.wait()[0]
        except ChildProcessError:
            return
        children.pop(pid, None)


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.WEXITSTATUS(status)}"
