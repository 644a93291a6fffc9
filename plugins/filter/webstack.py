"""Filters that turn the user's one description of each app into what each tier needs.

The contract between nginx and the app server (protocol and address) is decided here and
nowhere else: the app tier reads ``listen`` from :func:`webstack_apps`, the web tier reads the
same value back through :func:`webstack_nginx_sites`.
"""

import hashlib
import ipaddress
import pathlib
import re
from collections.abc import Mapping

import yaml
from ansible.errors import AnsibleFilterError

# Each filter's documentation is its own file beside this one (plugins/filter/<name>.yml).

# The app servers: python_app's table (roles/python_app/vars/main/servers.yml, where each trait is
# explained), read here so that a server is one entry in one place. The names below are views of it.
SERVER_TABLE = yaml.safe_load(
    (pathlib.Path(__file__).resolve().parents[2] / "roles/python_app/vars/main/servers.yml").read_text()
)["_python_app_servers"]
# server -> the protocol nginx speaks to it
SERVERS = {server: entry["protocol"] for server, entry in SERVER_TABLE.items()}
# server -> the script nginx names (SCRIPT_FILENAME) in the app's live release, for servers that run one.
SERVER_SCRIPTS = {server: entry["script"] for server, entry in SERVER_TABLE.items() if "script" in entry}
# server -> the Debian packages site.yml removes from a host with the last app that uses them.
SERVER_HOST_PACKAGES = {server: entry["host_packages"] for server, entry in SERVER_TABLE.items()
                        if "host_packages" in entry}
_UNIX = [server for server, entry in SERVER_TABLE.items() if entry.get("listen") == "unix"]
# Servers that bind their unix socket themselves (no systemd socket): a reload renames a new socket
# over the path, which has no TCP equivalent.
UNIX_ONLY_SERVERS = tuple(server for server in _UNIX if SERVER_TABLE[server].get("own_socket"))
# Servers that must never listen where anything but nginx can reach them: fcgiwrap runs whatever
# executable a FastCGI client names (SCRIPT_FILENAME).
UNIX_SOCKET_ONLY_SERVERS = tuple(server for server in _UNIX if not SERVER_TABLE[server].get("own_socket"))
# Servers that bind a TCP port themselves, as the app's user (Apache has no unix-socket Listen).
TCP_ONLY_SERVERS = tuple(server for server, entry in SERVER_TABLE.items() if entry.get("listen") == "tcp")
# Servers whose workers take one connection each (prefork): an idle kept-alive connection from
# nginx would hold a whole worker, so nginx keeps none.
NO_KEEPALIVE_SERVERS = tuple(server for server, entry in SERVER_TABLE.items() if entry.get("keepalive") is False)
# Servers Debian has up to a release only: server -> the last Debian major version that has it.
SERVER_LAST_DEBIAN = {server: entry["last_debian"] for server, entry in SERVER_TABLE.items() if "last_debian" in entry}
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# An app's name becomes a system user and group, /run/<name>.sock and the units <name>.service,
# .socket and -handover@.service: these names would take over an account, a socket or a unit of
# Debian, of its daemons, or of this collection's own tiers. They are always refused; on the host,
# python_app also refuses any account or unit of the app's name that the roles did not make
# (webstack_claim).
RESERVED_NAMES = frozenset({
    # Debian's base accounts and groups
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "adm", "tty", "disk", "kmem",
    "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip", "operator", "src",
    "shadow", "utmp", "video", "sasl", "plugdev", "staff", "users", "input", "kvm", "render", "sgx",
    "netdev", "crontab", "messagebus", "polkitd", "ssl-cert", "_apt", "_chrony", "ntp", "ntpsec",
    # daemons and their units that the stack runs beside
    "ssh", "sshd", "nginx", "apache", "apache2", "apache-htcacheclean", "postgres", "postgresql",
    "pgbackrest", "repmgr", "patroni", "redis", "redis-server", "memcache", "memcached", "fcgiwrap",
    "spawn-fcgi", "docker", "containerd", "cron", "anacron", "atd", "dbus", "rsyslog", "syslog",
    "nftables", "iptables", "networking", "network", "resolvconf", "unattended-upgrades", "apt",
    "apt-daily", "apt-daily-upgrade", "dpkg", "dpkg-db-backup", "logrotate", "man-db", "e2scrub",
    "e2scrub_all", "fstrim", "certbot", "prometheus", "mysql", "mariadb", "exim4", "postfix",
    "chrony", "getty", "console-getty", "container-getty", "serial-getty", "autovt", "user",
    "emergency", "rescue", "reboot", "poweroff", "halt", "kexec", "exit", "sysinit", "basic",
    "default", "multi-user", "graphical", "shutdown", "final", "init", "ifup", "lvm2", "mdadm",
    "polkit", "tmp", "local-fs", "remote-fs", "sockets", "timers", "paths", "slices", "swap",
})
# Name beginnings that belong to systemd, Debian's system users, or the collection's own units.
RESERVED_PREFIXES = ("systemd-", "webstack", "debian-", "nss-", "dbus-", "ssh-", "nginx-", "postgresql-",
                     "apache2-", "apache-", "user-", "getty-")
# Every app's directory is below this base, one directory per app, never inside another's.
APPS_BASE = "/srv"
KNOWN_KEYS = {
    "name", "source", "wsgi_app", "server", "domains", "domains_regex", "static", "env", "secret_env",
    "gunicorn", "uwsgi", "flup", "tornado", "gevent", "cgi", "spawn_fcgi", "mod_wsgi", "mod_python", "root",
    "state", "requirements_file", "pip_packages",
    "listen", "listen_exposed", "keepalive", "prefix", "healthcheck", "pre_activate", "keep_releases", "port", "database",
    "tls", "nginx", "access", "generated_secrets",
}
# Settings of the app's nginx server that an app may set (the nginx role checks the values).
NGINX_SITE_KEYS = {
    "client_max_body_size", "read_timeout", "limit_req_rate", "limit_req_burst", "limit_conn",
    "client_header_timeout", "client_body_timeout", "send_timeout",
}
TLS_KEYS = {"certificate", "key", "certificate_content", "key_content", "port", "acme"}
# An access check of a location: a Lua token check or an auth_request to an app.
ACCESS_KEYS = {"location", "lua", "auth_request"}
ACCESS_KINDS = {"lua": {"header", "tokens"}, "auth_request": {"path", "app"}}
URL_LOCATION_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")
DATABASE_KEYS = {"name", "user", "password", "extensions"}
# PostgreSQL's own databases and roles: never an app's.
RESERVED_DB_NAMES = frozenset({"postgres", "template0", "template1", "public", "root"})
DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DB_PORT = 5432
DEFAULT_KEEP_RELEASES = 5
HEALTHCHECK_KEYS = {"path", "host", "status", "timeout"}
# The keys of a completed app that the python_app role takes as python_app_<key> (healthcheck as
# python_app_healthcheck_<key>), and the server roles whose <role>_overrides an app may carry.
# The one place where webstack_apps meets the role's variables: webstack_python_app_vars.
PYTHON_APP_KEYS = (
    "name", "state", "source", "wsgi_app", "server", "root", "listen", "listen_exposed", "env", "secret_env",
    "generated_secrets", "requirements_file", "pip_packages", "pre_activate", "keep_releases",
)
SERVER_ROLES = tuple(dict.fromkeys(entry["facts"] for entry in SERVER_TABLE.values()))
# What an app may set in each server's dict (handed to the server's role as <role>_overrides):
# a whole number as (lowest, highest), a tuple of strings to choose from, bool, or a string that
# must match a pattern. Every dict is checked, whichever server the app runs, before anything
# changes; the roles' argument specs list the same keys (tests/test_servers_agree.py).
_COUNT = (1, 1024)
_SECONDS = (1, 86400)
_REQUESTS = (0, 1_000_000_000)
SERVER_SETTINGS = {
    "gunicorn": {"workers": _COUNT, "worker_class": ("sync", "gthread", "gevent"), "threads": _COUNT,
                 "timeout": _SECONDS, "graceful_timeout": _SECONDS, "keepalive": (0, 3600),
                 "max_requests": _REQUESTS, "max_requests_jitter": _REQUESTS, "preload_app": bool,
                 "access_log": re.compile(r"|-|/[A-Za-z0-9._@+/-]+")},
    "uwsgi": {"processes": _COUNT, "threads": _COUNT, "buffer_size": (4096, 65535), "harakiri": (0, 86400),
              "max_requests": _REQUESTS, "log_requests": bool},
    "flup": {"max_children": _COUNT, "max_spare": _COUNT, "min_spare": (0, 1024), "max_requests": _REQUESTS},
    "tornado": {"processes": _COUNT, "threads": (0, 1024), "keepalive": (0, 3600), "graceful_timeout": _SECONDS,
                "max_body_size": (1, 1 << 40)},
    "gevent": {"processes": _COUNT, "connections": (1, 1_000_000), "graceful_timeout": _SECONDS},
    "cgi": {"processes": _COUNT, "timeout": _SECONDS},
    "spawn_fcgi": {"processes": _COUNT, "timeout": _SECONDS, "drain": (0, 3600)},
    "mod_wsgi": {"processes": _COUNT, "threads": _COUNT, "apache_threads": _COUNT, "graceful_timeout": _SECONDS,
                 "keepalive": (0, 3600)},
    "mod_python": {"processes": _COUNT, "graceful_timeout": _SECONDS},
}


# A URL prefix an app is mounted under: "/" (the site root) or "/seg/.../".
PREFIX_RE = re.compile(r"^/([A-Za-z0-9._~-]+/)*$")
# A host name nginx may get as a server_name: labels of letters, digits, - and _, dot-separated,
# with an optional leading "*." or "." wildcard ("_" alone is the usual catch-all). Nothing that
# nginx's parser treats as syntax (white space, ;, {, }, quotes) can pass.
HOST_NAME_RE = re.compile(r"^(\*\.|\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*$")
# An nginx regex server_name ("~..."), allowed only when the caller asks for it.
HOST_REGEX_RE = re.compile(r"""^~[^\s;{}'"#]+$""")
# Paths that reach nginx unquoted (root, static dirs): no white space or nginx syntax.
PATH_PART_RE = re.compile(r"^[A-Za-z0-9._@+/-]+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The WSGI callable: module:name or module:factory(...).
WSGI_APP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*(\(.*\))?")
# A path (and query) the health gate asks for.
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*(\?[A-Za-z0-9._~=&%-]*)?$")
LISTEN_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
# Protocols whose upstream connections nginx can keep open (uwsgi and SCGI have no keep-alive).
KEEPALIVE_PROTOCOLS = {"http", "fastcgi"}
# Idle upstream connections each nginx worker keeps, by protocol, on a TCP listener (make
# bench-ports, 128 connections, 1,000 local ports): HTTP with 16 still closed the surplus after
# each burst and ran the ports out; 64 closed 3 in 6 s. FastCGI keeps none by default: flup's
# children are processes, a kept idle connection pins one, and requests on new connections waited
# in the backlog for seconds (wrk timeouts); without fastcgi_keep_conn the app closes each
# connection, so its TIME_WAIT is on the app's side and nginx's ports stay free (0 errors).
DEFAULT_KEEPALIVE = {"http": 64}


def server_settings_problem(role, settings):
    """What is wrong with one server's dict of an app ("" when nothing is), naming the key."""
    if not isinstance(settings, Mapping):
        return "must be a dict"
    allowed = SERVER_SETTINGS[role]
    for key, value in settings.items():
        rule = allowed.get(key)
        if rule is None:
            return f"unknown key {key!r} (known: {', '.join(allowed)})"
        if rule is bool:
            good, wanted = isinstance(value, bool), "true or false"
        elif isinstance(rule, re.Pattern):
            good, wanted = isinstance(value, str) and rule.fullmatch(value), f"a string matching {rule.pattern}"
        elif isinstance(rule[0], str):
            good, wanted = value in rule, f"one of {', '.join(rule)}"
        else:
            good = isinstance(value, int) and not isinstance(value, bool) and rule[0] <= value <= rule[1]
            wanted = f"a whole number from {rule[0]} to {rule[1]}"
        if not good:
            return f"{key} must be {wanted} (got {value!r})"
    return ""


def bad_server_names(names, allow_regex=False):
    """The entries of ``names`` that must not reach nginx's server_name (empty when all are fine).

    A host name (see HOST_NAME_RE) always passes; an nginx regex (``~...``) only with
    ``allow_regex``. Anything else could end the directive and inject others.
    """
    if not isinstance(names, list):
        return [names]
    return [
        name for name in names
        if not isinstance(name, str) or len(name) > 253
        or not (HOST_NAME_RE.fullmatch(name) or (allow_regex and HOST_REGEX_RE.fullmatch(name)))
    ]


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".whl")
CHECKSUM_RE = re.compile(r"^(md5|sha1|sha224|sha256|sha384|sha512):[0-9a-fA-F]+$")


# White space and control characters: never part of a URL, path or ref the roles hand to a command.
UNSAFE_CHARS_RE = re.compile(r"[\x00-\x20\x7f]")
ARCHIVE_URL_RE = re.compile(r"(https?|ftp)://[^\s]+")
# git's own URL forms: scheme://..., [user@]host:path, or a path. Not git's remote helpers
# (<transport>::<address>): ext:: runs a command of the URL's choosing.
GIT_URL_RE = re.compile(r"(ssh|git|https?|file)://\S+|([A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:[^:\s]\S*|[/.A-Za-z0-9_~]\S*")
# What `git check-ref-format` refuses in a ref name, checked component by component.
GIT_REF_BAD_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def git_url_problem(url):
    """What is wrong with a git source's URL ("" when nothing is): it goes to git on the
    controller, so it must not read as an option (a leading -) or as a remote helper (ext::)."""
    if url.startswith("-") or re.search(r"(://|@)-", url) or UNSAFE_CHARS_RE.search(url):
        return f"git must not start with - (nor its host), or hold white space or control characters (got {url!r})"
    if "::" in url.split("/", 1)[0] or not GIT_URL_RE.fullmatch(url):
        return (f"git must be a repository URL (https://, ssh://, git://, file://, user@host:path) or a path; "
                f"remote helpers such as ext:: are refused (got {url!r})")
    return ""


def git_ref_problem(ref):
    """What is wrong with a git source's version ("" when nothing is): a tag, branch or commit
    that `git check-ref-format --allow-onelevel` takes, never an option."""
    bad = (ref.startswith("-") or GIT_REF_BAD_RE.search(ref) or ref.endswith((".", "/")) or ref == "@"
           or any(part.startswith(".") or part.endswith(".lock") or not part for part in ref.split("/")))
    if bad:
        return (f"version must be a tag, branch or commit that git check-ref-format accepts: no leading -, "
                f"no white space, ~ ^ : ? * [ \\, .., @{{ or // (got {ref!r})")
    return ""


def source_problem(source):
    """What is wrong with an app's source description ("" when nothing is).

    A source is a directory on the controller (a string), a git repository with the ref to deploy
    ({git: URL, version: tag|branch|sha}), or an archive on the controller or at a URL
    ({archive: path-or-URL ending .tar.gz/.tgz/.zip/.whl, checksum: "sha256:..."}; a URL needs the
    checksum).
    """
    if isinstance(source, str):
        return "" if source else "is required: a directory, {git: URL, version: REF} or {archive: PATH_OR_URL}"
    if not isinstance(source, dict):
        return f"must be a directory, {{git: URL, version: REF}} or {{archive: PATH_OR_URL}} (got {source!r})"
    if "git" in source:
        unknown = sorted(set(source) - {"git", "version"})
        if unknown:
            return f"unknown key {unknown[0]!r} for a git source (known: git, version)"
        if not isinstance(source["git"], str) or not source["git"]:
            return "git must be the repository's URL or path"
        problem = git_url_problem(source["git"])
        if problem:
            return problem
        if not isinstance(source.get("version"), str) or not source.get("version"):
            return "a git source needs a version: the tag, branch or commit to deploy"
        return git_ref_problem(source["version"])
    if "archive" in source:
        unknown = sorted(set(source) - {"archive", "checksum"})
        if unknown:
            return f"unknown key {unknown[0]!r} for an archive source (known: archive, checksum)"
        archive = source["archive"]
        if not isinstance(archive, str) or not archive.endswith(ARCHIVE_SUFFIXES):
            return f"archive must be a path or URL ending in {', '.join(ARCHIVE_SUFFIXES)} (got {archive!r})"
        if archive.startswith("-") or UNSAFE_CHARS_RE.search(archive):
            return f"archive must not start with - or hold white space or control characters (got {archive!r})"
        if "://" in archive and not ARCHIVE_URL_RE.fullmatch(archive):
            return f"an archive URL must be http://, https:// or ftp:// (got {archive!r})"
        checksum = source.get("checksum", "")
        if checksum and (not isinstance(checksum, str) or not CHECKSUM_RE.fullmatch(checksum)):
            return f"checksum must look like sha256:<hex> (got {checksum!r})"
        if re.match(r"^[a-z]+://", archive) and not checksum:
            return "an archive at a URL needs a checksum (sha256:<hex>)"
        return ""
    return f"a source dict needs git or archive (got keys {', '.join(sorted(map(str, source)))})"


def systemd_env_value(value):
    """Quote one value for a systemd EnvironmentFile= so the process gets exactly ``value``.

    systemd reads a double-quoted value up to the next unescaped double quote, keeping newlines,
    and inside it turns a backslash before a backslash, double quote, backtick or dollar into that
    character alone (any other backslash stays). So escape those four and nothing else: a quote in
    the value cannot end it early and start a second variable.
    """
    text = value if isinstance(value, str) else str(value)
    if "\0" in text:
        raise AnsibleFilterError("an environment value cannot hold a NUL character")
    return '"' + re.sub(r'([\\"`$])', r"\\\1", text) + '"'


def _reserved(name):
    """Whether an app or account name is one of the system's (RESERVED_NAMES, RESERVED_PREFIXES)."""
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


def _plain_parts(path):
    """Whether a relative path names something inside its base: no empty, . or .. part."""
    return all(part not in ("", ".", "..") for part in path.split("/"))


def root_problem(root):
    """What is wrong with an app's directory ("" when nothing is): one directory below
    APPS_BASE, written plainly (the role removes it whole when the app is set absent)."""
    if not isinstance(root, str) or not PATH_PART_RE.fullmatch(root) or not root.startswith(APPS_BASE + "/") \
            or not _plain_parts(root[len(APPS_BASE) + 1:]):
        return (f"must be a directory below {APPS_BASE}/ (default {APPS_BASE}/<name>), of letters, digits and "
                f". _ @ + - / with no . or .. parts (got {root!r})")
    return ""


def pip_packages_problem(packages):
    """What is wrong with pip_packages ("" when nothing is): requirement specifiers (PEP 508),
    never pip options such as --index-url."""
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(packages, list):
        return f"must be a list of requirement specifiers like flask==3.1.3 (got {packages!r})"
    for entry in packages:
        if not isinstance(entry, str) or not entry.strip() or entry.lstrip().startswith("-") \
                or re.search(r"[\x00-\x1f\x7f]", entry):
            return f"{entry!r} is not a requirement specifier (pip options and control characters are refused)"
        try:
            Requirement(entry)
        except InvalidRequirement as error:
            return f"{entry!r} is not a requirement specifier: {error}"
    return ""


def listen_problem(listen, name, exposed=False):
    """What is wrong with an app's listen on a host where nginx reaches it locally ("" when
    nothing is): its unix socket /run/<name>.sock, or host:port on a loopback address. Another
    address would let clients past nginx's TLS, limits and access checks with no firewall rule:
    only with ``exposed`` (listen_exposed: true)."""
    if not isinstance(listen, str) or not (listen == f"/run/{name}.sock" or LISTEN_RE.fullmatch(listen)):
        return f"must be host:port, or left out for the unix socket /run/{name}.sock (got {listen!r})"
    if listen.startswith("/"):
        return ""
    host, port = listen.rsplit(":", 1)
    if not 0 < int(port) < 65536:
        return f"port out of range (got {listen!r})"
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not exposed:
        return (f"{listen} is not a loopback address: clients could reach the app past nginx's TLS, limits and "
                "access checks, and no firewall rule is made for it. Use 127.0.0.1:<port>, or split web and app "
                "hosts (port:, with a firewall rule), or set listen_exposed: true if something else guards it")
    return ""


def _fail(index, field, message):
    raise AnsibleFilterError(f"webstack_apps[{index}].{field}: {message}")


def _healthcheck(index, given, domains):
    """The health gate's request: path, status, timeout, and a Host the app answers to."""
    if not isinstance(given, dict) or set(given) - HEALTHCHECK_KEYS:
        _fail(index, "healthcheck", f"must be a dict of {', '.join(sorted(HEALTHCHECK_KEYS))} (got {given!r})")
    plain = [d.lstrip(".") for d in domains if HOST_NAME_RE.fullmatch(d) and not d.startswith("*") and d != "_"]
    # status 0: any answer below 500 passes (the release is alive; most apps have no health route).
    check = {"path": "/healthz", "host": plain[0] if plain else "localhost", "status": 0, "timeout": 10, **given}
    if not isinstance(check["path"], str) or not (check["path"] == "" or URL_PATH_RE.fullmatch(check["path"])):
        _fail(index, "healthcheck.path", f"must be a URL path like /healthz, or empty to turn the gate off (got {check['path']!r})")
    if bad_server_names([check["host"]]):
        _fail(index, "healthcheck.host", f"must be a host name (got {check['host']!r})")
    for field, low, high in (("status", 100, 599), ("timeout", 1, 3600)):
        value = check[field]
        if not isinstance(value, int) or isinstance(value, bool) or not (low <= value <= high or (field, value) == ("status", 0)):
            _fail(index, f"healthcheck.{field}", f"must be a whole number from {low} to {high}"
                  f"{' (or 0: any answer below 500)' if field == 'status' else ''} (got {value!r})")
    return check


def _app(index, app, layout=None, host=None):
    if not isinstance(app, dict):
        raise AnsibleFilterError(f"webstack_apps[{index}] must be a dict, got {type(app).__name__}")
    unknown = sorted(set(app) - KNOWN_KEYS)
    if unknown:
        _fail(index, unknown[0], f"unknown key (known: {', '.join(sorted(KNOWN_KEYS))})")
    name = app.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        _fail(index, "name", f"must be lowercase letters, digits, - or _, starting with a letter (got {name!r})")
    if _reserved(name):
        _fail(index, "name", f"{name!r} is reserved: it names a system account, a daemon or a unit the app would "
              "take over (its user, group, socket and units are named after it); choose another name")
    if not isinstance(app.get("wsgi_app"), str) or not WSGI_APP_RE.fullmatch(app["wsgi_app"]):
        _fail(index, "wsgi_app", f"must look like module:name or module:factory() (got {app.get('wsgi_app')!r})")
    problem = source_problem(app.get("source"))
    if problem:
        _fail(index, "source", problem)
    server = app.get("server", "gunicorn")
    if server not in SERVERS:
        _fail(index, "server", f"must be one of {', '.join(SERVERS)} (got {server!r})")
    domains = app.get("domains", [name])
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) and d for d in domains):
        _fail(index, "domains", "must be a non-empty list of host names")
    domains_regex = app.get("domains_regex", False)
    if not isinstance(domains_regex, bool):
        _fail(index, "domains_regex", f"must be true or false (got {domains_regex!r})")
    bad = bad_server_names(domains, domains_regex)
    if bad:
        _fail(index, "domains", f"{bad[0]!r} is not a host name: letters, digits, -, _ and dots, with an "
              "optional leading *. or . wildcard" + ("" if domains_regex else "; an nginx ~regex needs domains_regex: true"))
    state = app.get("state", "present")
    if state not in ("present", "absent"):
        _fail(index, "state", f"must be present or absent (got {state!r})")
    static = app.get("static", [])
    if not isinstance(static, list):
        _fail(index, "static", "must be a list of {url, dir}")
    for item in static:
        if not isinstance(item, dict) or set(item) - {"url", "dir", "expires"} or not {"url", "dir"} <= set(item):
            _fail(index, "static", "each entry needs url and dir (and optionally expires)")
        if not (item["url"].startswith("/") and item["url"].endswith("/")):
            _fail(index, "static", f"url must start and end with / (got {item['url']!r})")
        if item["dir"].startswith("/") or not _plain_parts(item["dir"].strip("/")):
            _fail(index, "static", f"dir must be a directory inside the app source, not the source itself or "
                  f"above it (got {item['dir']!r})")
        if not PATH_PART_RE.fullmatch(item["dir"]) or not PREFIX_RE.fullmatch(item["url"]):
            _fail(index, "static", f"url and dir may hold letters, digits and . _ @ + - / only (got {item!r})")
    for field in ("env", "secret_env"):
        if not isinstance(app.get(field, {}), dict):
            _fail(index, field, "must be a dict")
    for role in SERVER_ROLES:
        problem = server_settings_problem(role, app.get(role, {}))
        if problem:
            _fail(index, role, problem)
    for field in ("env", "secret_env"):
        for key, value in app.get(field, {}).items():
            if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
                _fail(index, field, f"{key!r} is not an environment variable name")
            if isinstance(value, (dict, list)) or value is None:
                _fail(index, f"{field}.{key}", "must be a string, a number or a boolean")
    if not isinstance(app.get("listen_exposed", False), bool):
        _fail(index, "listen_exposed", f"must be true or false (got {app['listen_exposed']!r})")
    port = app.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        _fail(index, "port", f"must be a TCP port, 1 to 65535 (got {port!r})")
    split = bool(layout and layout["split"])
    if split:
        # Web and app tiers on different hosts: TCP on each app host's private address, and every
        # web host's upstream lists every app host.
        if "listen" in app:
            _fail(index, "listen", "is per host when web and app hosts differ: give port instead")
        if port is None and state == "present":
            _fail(index, "port", "is required when the web and app hosts differ (the app listens on "
                  "TCP on each app host's private address)")
        servers = [_host_port(layout["addresses"][h], port) for h in layout["app"]] if port else []
        listen = _host_port(layout["addresses"][host], port) if port and host in layout["app"] else ""
    else:
        # Same host: a unix socket held by systemd, outside any RuntimeDirectory. Or host:port.
        listen = app.get("listen", f"/run/{name}.sock")
        problem = listen_problem(listen, name, app.get("listen_exposed", False))
        if problem:
            _fail(index, "listen", problem)
        servers = [f"unix:{listen}" if listen.startswith("/") else listen]
    tcp = split or not listen.startswith("/")
    if tcp and server in UNIX_SOCKET_ONLY_SERVERS:
        _fail(index, "port" if split else "listen", f"{server} runs any program a client names in SCRIPT_FILENAME, "
              "so it listens on its unix socket only, where nginx alone can reach it: leave listen out and keep web "
              "and app on the same host")
    if tcp and server in UNIX_ONLY_SERVERS:
        _fail(index, "server", f"{server} binds its unix socket itself and reloads by renaming a new one over "
              "it, which TCP cannot do: leave listen out and keep web and app on the same host, or pick fastcgi "
              "(flup on a socket systemd holds) for TCP")
    if not tcp and server in TCP_ONLY_SERVERS:
        _fail(index, "listen", f"{server} runs an Apache of the app's own, which listens on TCP only: give "
              "listen: 127.0.0.1:<a free port> (or port, on split tiers)")
    bound = port if split else int(listen.rsplit(":", 1)[1]) if tcp else None
    if server in TCP_ONLY_SERVERS and bound is not None and bound < 1024:
        _fail(index, "port" if split else "listen", f"{server}'s Apache runs as the app's user, which cannot "
              f"bind a port below 1024 (got {bound})")
    protocol = SERVERS[server]
    keepalive = app.get("keepalive", DEFAULT_KEEPALIVE.get(protocol, 0) if tcp and server not in NO_KEEPALIVE_SERVERS
                        else 0)
    if not isinstance(keepalive, int) or isinstance(keepalive, bool) or keepalive < 0:
        _fail(index, "keepalive", f"must be a whole number of connections (got {keepalive!r})")
    if keepalive and protocol not in KEEPALIVE_PROTOCOLS:
        _fail(index, "keepalive", f"the {protocol} protocol has no keep-alive; leave it 0")
    if keepalive and server in NO_KEEPALIVE_SERVERS:
        _fail(index, "keepalive", f"{server} serves one connection per process: an idle kept-alive connection "
              "would hold a whole process; leave it 0")
    if keepalive and not tcp:
        _fail(index, "keepalive", "only TCP listeners use keep-alive; a unix socket has nothing to save")
    prefix = app.get("prefix", "/")
    if isinstance(prefix, str) and prefix.startswith("/") and not prefix.endswith("/"):
        prefix += "/"
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix) or "/../" in prefix or "/./" in prefix:
        _fail(index, "prefix", f"must be a URL path like /blog (got {app.get('prefix')!r})")
    healthcheck = _healthcheck(index, app.get("healthcheck", {}), domains)
    pre_activate = app.get("pre_activate", [])
    if not isinstance(pre_activate, list) or not all(isinstance(c, str) and c.strip() for c in pre_activate):
        _fail(index, "pre_activate", f"must be a list of commands (non-empty strings) (got {pre_activate!r})")
    keep_releases = app.get("keep_releases", DEFAULT_KEEP_RELEASES)
    if not isinstance(keep_releases, int) or isinstance(keep_releases, bool) or keep_releases < 1:
        _fail(index, "keep_releases", f"must be a whole number of releases, 1 or more (got {keep_releases!r})")
    database = _database(index, app.get("database"), name, layout, host)
    tls = app.get("tls")
    if tls is True:
        tls = {}
    if tls is False:
        tls = None
    site_settings = app.get("nginx", {})
    if not isinstance(site_settings, dict) or set(site_settings) - NGINX_SITE_KEYS:
        _fail(index, "nginx", f"must be a dict of {', '.join(sorted(NGINX_SITE_KEYS))} (got {site_settings!r})")
    if tls is not None and (not isinstance(tls, dict) or set(tls) - TLS_KEYS):
        # Never the values: key_content is a private key.
        _fail(index, "tls", f"must be true (a self-signed certificate), false, or a dict of "
              f"{', '.join(sorted(TLS_KEYS))} (got {sorted(tls) if isinstance(tls, dict) else type(tls).__name__})")
    if tls and "acme" in tls and (not isinstance(tls["acme"], bool)
                                  or (tls["acme"] and {"certificate", "certificate_content"} & set(tls))):
        _fail(index, "tls.acme", "must be true (a certificate from nginx_acme_directory) or false, "
              f"and not given with a certificate of your own (got acme={tls['acme']!r} with keys {sorted(tls)})")
    generated = app.get("generated_secrets", ["SECRET_KEY"])
    if not isinstance(generated, list) or not all(isinstance(n, str) and ENV_NAME_RE.fullmatch(n) for n in generated):
        _fail(index, "generated_secrets", f"must be a list of environment variable names (got {generated!r})")
    access = app.get("access", [])
    problems = _check_problems(access, f"webstack_apps[{index}].access", "/", None)
    if problems:
        raise AnsibleFilterError(problems[0])
    root = app.get("root", f"{APPS_BASE}/{name}")
    problem = root_problem(root)
    if problem:
        _fail(index, "root", problem)
    requirements_file = app.get("requirements_file", "requirements.txt")
    if not isinstance(requirements_file, str) or (requirements_file and (
            not PATH_PART_RE.fullmatch(requirements_file) or not _plain_parts(requirements_file))):
        _fail(index, "requirements_file", f"must be a file inside the app source, as a relative path, or empty "
              f"(got {requirements_file!r})")
    pip_packages = app.get("pip_packages", [])
    problem = pip_packages_problem(pip_packages)
    if problem:
        _fail(index, "pip_packages", problem)
    normalized = dict(app)
    normalized.update(
        server=server,
        protocol=protocol,
        domains=domains,
        domains_regex=domains_regex,
        state=state,
        static=static,
        env=app.get("env", {}),
        secret_env=app.get("secret_env", {}),
        **{role: app.get(role, {}) for role in SERVER_ROLES},
        root=root,
        requirements_file=requirements_file,
        pip_packages=pip_packages,
        listen=listen,
        # On split tiers the app listens on its private address, which the firewall role opens
        # to the web hosts only.
        listen_exposed=app.get("listen_exposed", False) or split,
        port=port,
        upstream_servers=servers,
        # nginx serves static files from the live release only where the release is: its own host.
        static_by_nginx=not split,
        keepalive=keepalive,
        prefix=prefix,
        healthcheck=healthcheck,
        pre_activate=pre_activate,
        keep_releases=keep_releases,
        database=database,
        tls=tls,
        nginx=site_settings,
        access=access,
        generated_secrets=generated,
    )
    return normalized


def _database(index, given, name, layout, host):
    """The app's database on the db host, or None: its name, login role, extensions, and where
    the app reaches it (127.0.0.1 on the db host itself, else the db host's private address)."""
    if given in (None, False):
        return None
    if given is True:
        given = {}
    if not isinstance(given, dict) or set(given) - DATABASE_KEYS:
        _fail(index, "database", f"must be true or a dict of {', '.join(sorted(DATABASE_KEYS))} (got {given!r})")
    default = name.replace("-", "_")
    database = {"name": default, "user": default, "extensions": [], **given}
    for field in ("name", "user"):
        if not isinstance(database[field], str) or not DB_NAME_RE.fullmatch(database[field]):
            _fail(index, f"database.{field}", f"must be lowercase letters, digits and _ (got {database[field]!r})")
        if database[field] in RESERVED_DB_NAMES or database[field].startswith("pg_"):
            _fail(index, f"database.{field}", f"{database[field]!r} is PostgreSQL's own (postgres, template0, "
                  "template1, public and pg_* are never an app's)")
    extensions = database["extensions"]
    if not isinstance(extensions, list) or not all(isinstance(e, str) and re.fullmatch(r"[a-z_][a-z0-9_-]*", e) for e in extensions):
        _fail(index, "database.extensions", f"must be a list of extension names (got {extensions!r})")
    if "password" in database and (not isinstance(database["password"], str) or not database["password"]):
        _fail(index, "database.password", "must be a non-empty string (from Ansible Vault), or left out to generate one")
    db_host = _db_host(layout or {})
    if layout is not None and not db_host:
        _fail(index, "database", "needs a host in the inventory group db")
    if host is None or not db_host or host == db_host:
        address = "127.0.0.1"
    else:
        address = layout["addresses"].get(db_host, "")
    database.update(host=db_host, address=address, port=DB_PORT)
    return database


def _db_host(layout):
    """The inventory name of the db host ("" when the inventory has none)."""
    return (layout.get("db") or [""])[0]


def _db_clients(layout):
    """The private addresses of the app hosts that reach PostgreSQL over the network."""
    db_host = _db_host(layout)
    return [layout["addresses"][h] for h in layout["app"] if h != db_host and h in layout["addresses"]]


def _host_port(address, port):
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def webstack_layout(groups, hostvars=None):
    """Where the tiers are, from the inventory: the web and app hosts, whether they are split.

    Split (TCP between nginx and the app servers) unless the web and app hosts are the same
    hosts: then each host is a whole stack and its nginx reaches its own apps over their unix
    sockets (several such hosts scale out behind a balancer of their own). No web hosts: nothing
    to reach the apps over the network, so not split either.
    The db group holds at most one host, the PostgreSQL server of every app that asks for a
    database; ``db_remote`` says some app host reaches it over the network.
    When split or db_remote, each host's private address (web, app and db hosts) is its
    ``webstack_private_address`` or else the address of its default route (``ansible_default_ipv4``,
    a gathered fact); without ``hostvars`` the addresses are left out (enough to ask whether the
    tiers are split).
    """
    web = list(groups.get("web", []))
    app = list(groups.get("app", []))
    db = list(groups.get("db", []))
    if len(db) > 1:
        raise AnsibleFilterError(f"webstack: one host in group db, not {len(db)} ({', '.join(db)}): "
                                 "the roles set up one PostgreSQL server, not replication")
    split = bool(web) and set(web) != set(app)
    db_remote = bool(db) and bool(set(app) - set(db))
    addresses = {}
    if (split or db_remote) and hostvars is not None:
        for host in dict.fromkeys(web + app + db):
            values = hostvars[host] if hostvars is not None else {}
            address = values.get("webstack_private_address") or (values.get("ansible_default_ipv4") or {}).get("address")
            if not address or not isinstance(address, str) or not re.fullmatch(r"[0-9A-Fa-f.:]+", address):
                raise AnsibleFilterError(
                    f"webstack: no private address for host {host} (got {address!r}): set "
                    "webstack_private_address for it, or gather its facts (ansible_default_ipv4)")
            addresses[host] = address
    return {"web": web, "app": app, "db": db, "split": split, "db_remote": db_remote, "addresses": addresses}


def webstack_apps(apps, layout=None, host=None):
    """Check and complete the app list; raise with the offending index and field.

    ``layout`` (from :func:`webstack_layout`) and ``host`` (the inventory name of the host the
    result is for) decide where each app listens; without them, nginx and the app share a host.
    """
    if not isinstance(apps, list):
        raise AnsibleFilterError("webstack_apps must be a list of apps")
    normalized = [_app(index, app, layout, host) for index, app in enumerate(apps)]
    names = [app["name"] for app in normalized]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnsibleFilterError(f"webstack_apps: names must be unique, repeated: {', '.join(duplicates)}")
    present = [app["name"] for app in normalized if app["state"] == "present"]
    for index, app in enumerate(normalized):
        for number, check in enumerate(app["access"]):
            checker = check.get("auth_request", {}).get("app", app["name"])
            if app["state"] == "present" and checker not in present:
                _fail(index, f"access[{number}].auth_request.app",
                      f"must be a present app of webstack_apps (got {checker!r}; there are: {', '.join(present)})")
    ports = [app["port"] for app in normalized if layout and layout["split"] and app["state"] == "present"]
    taken = sorted({p for p in ports if ports.count(p) > 1})
    if taken:
        raise AnsibleFilterError(f"webstack_apps: each app needs its own port on the app hosts, repeated: "
                                 f"{', '.join(map(str, taken))}")
    _check_apart(normalized)
    return normalized


def _check_apart(apps):
    """What one app must not share with another: its directory (nor one inside the other's),
    its database and login role (absent apps keep theirs), and, on the same host names, a URL
    prefix inside another app's prefix or inside a location another app guards with an access
    check (that app would get the other's guarded requests and cookies)."""
    for index, app in enumerate(apps):
        for other_index, other in enumerate(apps[:index]):
            here = f"webstack_apps[{other_index}] ({other['name']})"
            if app["root"] == other["root"] or app["root"].startswith(other["root"] + "/") \
                    or other["root"].startswith(app["root"] + "/"):
                _fail(index, "root", f"{app['root']} is, or is inside, or holds the directory of {here}: "
                      "each app has a directory of its own")
            for field in ("name", "user"):
                mine, theirs = (app["database"] or {}).get(field), (other["database"] or {}).get(field)
                if mine and mine == theirs:
                    _fail(index, f"database.{field}", f"{mine!r} is already the database {field} of {here}: "
                          "each app has a database and login role of its own")
        if app["state"] != "present":
            continue
        for other in apps:
            if other is app or other["state"] != "present" or not set(app["domains"]) & set(other["domains"]):
                continue
            if "/" != other["prefix"] != app["prefix"] and app["prefix"].startswith(other["prefix"]):
                _fail(index, "prefix", f"{app['prefix']} is inside {other['name']}'s prefix {other['prefix']} on the "
                      "same domains: mount the apps side by side (/a/ and /b/), or one at /")
            base = other["prefix"].rstrip("/")
            for check in other["access"]:
                if app["prefix"].startswith(base + check["location"]):
                    _fail(index, "prefix", f"{app['prefix']} is inside {base + check['location']}, which "
                          f"{other['name']} guards with an access check: {app['name']} would get its requests")


def webstack_python_app_vars(app, secret_env=None, **extra):
    """The python_app role's variables for one app completed by :func:`webstack_apps`.

    ``secret_env`` is merged over the app's own (DATABASE_URL, worked out on the run); ``extra``
    are further python_app_* variables that belong to the run rather than the app
    (install_packages, rollback_to).
    """
    result = {f"python_app_{key}": app[key] for key in PYTHON_APP_KEYS}
    result["python_app_secret_env"] = {**app["secret_env"], **(secret_env or {})}
    result.update({f"python_app_healthcheck_{key}": value for key, value in app["healthcheck"].items()})
    # The release's only world-readable part: what nginx serves from it, on its own host.
    result["python_app_static_dirs"] = [item["dir"].strip("/") for item in app["static"]] if app["static_by_nginx"] else []
    result.update({f"{role}_overrides": app[role] for role in SERVER_ROLES})
    result.update({f"python_app_{key}": value for key, value in extra.items()})
    return result


def webstack_python_app_problems(given):
    """The python_app role's own check of its variables, by the same rules as
    :func:`webstack_apps`: ``given`` maps python_app_<key>, python_app_healthcheck_<key> and
    <role>_overrides to their values. A list with the first problem, naming the role's variable
    (never a value of python_app_secret_env), or empty."""
    app = {key: given[f"python_app_{key}"] for key in PYTHON_APP_KEYS if f"python_app_{key}" in given}
    app["healthcheck"] = {key: given[f"python_app_healthcheck_{key}"] for key in HEALTHCHECK_KEYS
                          if f"python_app_healthcheck_{key}" in given}
    app.update({role: given[f"{role}_overrides"] for role in SERVER_ROLES if f"{role}_overrides" in given})
    if app.get("server") == "":
        app.pop("server")  # no server: the user brings their own unit
    if given.get("python_app_static_dirs"):
        if not isinstance(given["python_app_static_dirs"], list):
            return ["python_app_static_dirs: must be a list of directories inside the app source"]
        app["static"] = [{"url": "/static/", "dir": directory} for directory in given["python_app_static_dirs"]]
    # The role is not given the app's domains: its health check names its own host.
    app["domains"] = [app["healthcheck"].get("host") or "localhost"]
    try:
        _app(0, app)
    except AnsibleFilterError as error:
        field, message = (str(error).split(": ", 1) + [""])[:2]
        field = field.replace("webstack_apps[0].", "", 1)
        top, rest = (field.split(".", 1) + [""])[:2]
        if top == "healthcheck" and rest:
            variable = f"python_app_healthcheck_{rest}"
        elif top in SERVER_ROLES:
            variable = f"{top}_overrides"
        elif top == "static":
            variable, message = "python_app_static_dirs", message.replace("url and dir", "directories")
        else:
            variable = f"python_app_{top}" + (f".{rest}" if rest else "")
        return [f"{variable}: {message}"]
    for field in ("user", "group"):
        account = given.get(f"python_app_{field}", app.get("name"))
        if not isinstance(account, str) or not NAME_RE.fullmatch(account) or _reserved(account):
            return [f"python_app_{field}: must be an account of the app's own, lowercase letters, digits, - or _, "
                    f"and not a reserved name (got {account!r})"]
    return []


def webstack_lead_hosts(hosts, hostvars):
    """Each app's lead host: the first of ``hosts`` (the play's, in play order) whose
    ``webstack_apps`` has the app present. python_app makes an app's generated secrets and runs its
    pre-activation commands there. Hosts may run different apps, so the play's first host may not
    run a given one. An app absent everywhere is not in the result (the play's first host leads).
    """
    leads = {}
    for host in hosts:
        for app in hostvars[host].get("webstack_apps") or []:
            if isinstance(app, Mapping) and app.get("state", "present") == "present" and isinstance(app.get("name"), str):
                leads.setdefault(app["name"], host)
    return leads


def webstack_batch_apps(hosts, hostvars, fact):
    """The names of the apps that any of ``hosts`` runs (each host's list of app dicts in its
    ``fact``), each once, every host's own order kept where the hosts' orders agree.

    app.yml, deploy.yml and rollback.yml loop over these names, not over each host's own dicts:
    then the include of one app is the same for every host that runs it, so Ansible's linear
    strategy runs those hosts side by side instead of one after the other, and a ``run_once``
    inside runs once for the app (its source, its generated secrets) instead of once per host.
    """
    order = []
    for host in hosts:
        at = -1
        for app in hostvars[host].get(fact) or []:
            if app["name"] in order:
                at = max(at, order.index(app["name"]))
            else:
                at += 1
                order.insert(at, app["name"])
    return order


def webstack_select_apps(apps, names="", absent=False):
    """The apps named in ``names`` ("a,b" or a list; empty: all), for site.yml, deploy and rollback.

    ``apps`` is the output of :func:`webstack_apps`. Only present apps, unless ``absent`` (site.yml,
    which removes the apps set absent). A name that is not among them fails, naming the ones there
    are.
    """
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names or [])
    wanted = [n for n in wanted if n]
    pool = [app for app in apps if absent or app["state"] == "present"]
    known = [app["name"] for app in pool]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        kind = "an app" if absent else "a present app"
        raise AnsibleFilterError(
            f"webstack_deploy_apps: {', '.join(map(repr, unknown))} is not {kind} of webstack_apps "
            f"(there are: {', '.join(known) or 'none'})")
    return [app for app in pool if not wanted or app["name"] in wanted]


def webstack_unavailable_servers(apps, debian_major):
    """Why the present apps of ``apps`` cannot run on a host with this Debian major version: one
    line per app whose server Debian no longer ships there (SERVER_LAST_DEBIAN); empty when all
    can. site.yml and python_app fail on it before they change anything."""
    try:
        major = int(debian_major)
    except (TypeError, ValueError):
        return []  # not Debian: its own package manager will say
    return [f"{app['name']}: server {app['server']} runs on Debian {SERVER_LAST_DEBIAN[app['server']]} and "
            f"older only (Debian {SERVER_LAST_DEBIAN[app['server']] + 1} dropped libapache2-mod-python; "
            f"this host runs Debian {major}): choose mod_wsgi, or a Debian {SERVER_LAST_DEBIAN[app['server']]} host"
            for app in apps
            if app.get("state", "present") == "present" and major > SERVER_LAST_DEBIAN.get(app.get("server"), major)]


def webstack_unused_server_packages(apps):
    """The Debian packages of app servers (SERVER_HOST_PACKAGES) that no present app of ``apps``
    (the host's whole list, from :func:`webstack_apps`) runs with: site.yml removes them."""
    used = {package for app in apps if app["state"] == "present"
            for package in SERVER_HOST_PACKAGES.get(app["server"], [])}
    return sorted({package for packages in SERVER_HOST_PACKAGES.values() for package in packages} - used)


def webstack_databases(apps, layout):
    """The postgresql role's postgresql_databases for an app list: one database and login role per
    present app that asks for one, open over TCP to the app hosts that are not the db host.

    An app set absent keeps its database: dropping data is never a side effect of removing code.
    """
    apps = webstack_apps(apps, layout)
    clients = _db_clients(layout)
    databases = []
    for app in apps:
        database = app["database"]
        if app["state"] != "present" or not database:
            continue
        entry = {"name": database["name"], "user": database["user"], "extensions": database["extensions"],
                 "clients": clients}
        if "password" in database:
            entry["password"] = database["password"]
        databases.append(entry)
    return databases


def webstack_firewall_rules(apps, layout, host):
    """The firewall role's firewall_rules for one host: on an app host of split tiers each app's
    port from the web hosts only; on the db host, when apps reach it over the network, PostgreSQL
    from the app hosts only. Empty elsewhere (unix sockets and localhost need no rule)."""
    apps = [app for app in webstack_apps(apps, layout, host) if app["state"] == "present"]
    addresses = layout.get("addresses", {})
    rules = []
    if layout["split"] and host in layout["app"]:
        web = [addresses[h] for h in layout["web"] if h in addresses]
        rules += [{"name": app["name"], "port": app["port"], "sources": web} for app in apps if app["port"]]
    if layout.get("db_remote") and host == _db_host(layout) and any(app["database"] for app in apps):
        rules.append({"name": "postgresql", "port": DB_PORT, "sources": _db_clients(layout)})
    return rules


def webstack_database_url(database, password):
    """DATABASE_URL for an app's normalised ``database`` and its login role's password."""
    from urllib.parse import quote

    address = database["address"]
    host = f"[{address}]" if ":" in address else address
    return (f"postgresql://{quote(database['user'], safe='')}:{quote(password, safe='')}"
            f"@{host}:{database['port']}/{quote(database['name'], safe='')}")


def _mount(app, down=()):
    """Where nginx finds one app: its upstream and its static files, under its URL prefix."""
    base = app["prefix"].rstrip("/")
    upstream = {"protocol": app["protocol"], "servers": app["upstream_servers"], "keepalive": app["keepalive"]}
    if app["server"] in SERVER_SCRIPTS:
        upstream["script"] = f"{app['root']}/current/{SERVER_SCRIPTS[app['server']]}"
    drained = [server for server in app["upstream_servers"] if server in down]
    if drained:
        upstream["down"] = drained
    return {
        "name": app["name"],
        "prefix": app["prefix"],
        "upstream": upstream,
        "static": [
            {
                "location": base + item["url"],
                "path": f"{app['root']}/current/src/{item['dir'].strip('/')}/",
                "expires": item.get("expires", "7d"),
            }
            for item in app["static"] if app["static_by_nginx"]
        ],
        # Locations below the app's prefix that nginx checks before the app sees them.
        "access": [{**check, "location": base + check["location"]} for check in app["access"]],
    }


def _server_groups(apps):
    """Present apps grouped by the host names they answer: each group is one nginx server."""
    groups = {}
    owner_of = {}
    for index, app in enumerate(apps):
        if app["state"] != "present":
            continue
        key = tuple(sorted(set(app["domains"])))
        for domain in key:
            other = owner_of.setdefault(domain, (key, index))
            if other[0] != key:
                _fail(index, "domains", f"shares {domain} with webstack_apps[{other[1]}] but not every "
                      "host name: apps on one host name must list the same domains")
        group = groups.setdefault(key, [])
        for other in group:
            if other[1]["prefix"] == app["prefix"]:
                _fail(index, "prefix", f"{app['prefix']} on {', '.join(key)} is already "
                      f"webstack_apps[{other[0]}] ({other[1]['name']}); give one of them another prefix")
        group.append((index, app))
    return list(groups.values())


def webstack_nginx_sites(apps, layout=None, down=None):
    """The nginx role's nginx_sites for an app list: one server per set of host names.

    Apps that share their host names share one server, each under its own URL prefix. The site
    is named after the app at the root (else the first app by name); every other app's name
    gets state absent, so no site file of an app that moved or left is kept.
    ``down`` names app hosts to drain (a rolling deploy's batch): their servers are rendered
    ``down`` in every upstream, when the tiers are split (else nginx reaches its own host only).
    """
    apps = webstack_apps(apps, layout)
    down_servers = set()
    if down and layout and layout["split"]:
        unknown = [h for h in down if h not in layout["app"]]
        if unknown:
            raise AnsibleFilterError(f"webstack_nginx_sites: cannot drain {', '.join(unknown)}: not an app host")
        down_servers = {_host_port(layout["addresses"][h], app["port"]) for h in down for app in apps if app["port"]}
    sites = []
    for group in _server_groups(apps):
        members = sorted((pair[1] for pair in group), key=lambda app: (app["prefix"] != "/", app["name"]))
        owner, others = members[0], members[1:]
        site = {"name": owner["name"], "state": "present", "server_names": owner["domains"],
                "server_names_regex": owner["domains_regex"]}
        site.update({key: value for key, value in _mount(owner, down_servers).items() if key != "name"})
        # One server for all of them: its HTTPS and nginx settings are theirs alike.
        tls = [app["tls"] for app in members if app["tls"] is not None]
        settings = [app["nginx"] for app in members if app["nginx"]]
        for key, given in (("tls", tls), ("nginx", settings)):
            if any(value != given[0] for value in given):
                raise AnsibleFilterError(
                    f"webstack_apps: {', '.join(app['name'] for app in members)} share their domains (one "
                    f"nginx server), so their {key} settings must agree")
        if tls:
            site["tls"] = tls[0]
        if settings:
            site.update(settings[0])
        site["mounts"] = [_mount(app, down_servers) for app in others]
        sites.append(site)
    owners = {site["name"] for site in sites}
    sites += [{"name": app["name"], "state": "absent"} for app in apps if app["name"] not in owners]
    return sites


def nginx_features(nginx_v):
    """What an nginx can do, from the output of ``nginx -V`` (empty when nginx is not there yet):
    its version and OpenSSL's, ``http2 on;`` (1.25.1 on) and the post-quantum key exchange group
    X25519MLKEM768 (OpenSSL 3.5 on). Unknown versions get the forms every nginx takes."""
    def version(pattern):
        match = re.search(pattern, nginx_v or "")
        return match.group(1) if match else "0"

    def at_least(found, wanted):
        return tuple(int(p) for p in found.split(".") if p.isdigit()) >= wanted

    nginx = version(r"nginx/([0-9.]+)")
    openssl = version(r"running with OpenSSL ([0-9.]+)")
    if openssl == "0":
        openssl = version(r"built with OpenSSL ([0-9.]+)")
    return {"version": nginx, "openssl": openssl, "http2_directive": at_least(nginx, (1, 25, 1)),
            "pq_groups": at_least(openssl, (3, 5))}


def nginx_subject_alt_names(server_names, fallback):
    """subjectAltName entries (DNS:... or IP:...) for a certificate of these nginx server names:
    wildcards as *.name, catch-alls and regexes left out; ``fallback`` (a host name) when none is
    left."""
    sans = []
    for name in server_names or []:
        name = name[1:] if name.startswith(".") else name
        if not name or name == "_" or name.startswith("~"):
            continue
        try:
            sans.append(f"IP:{ipaddress.ip_address(name)}")
        except ValueError:
            sans.append(f"DNS:{name.lower()}")
    return list(dict.fromkeys(sans)) or [f"DNS:{fallback}"]


def nginx_certificate_path(site, tls_dir, acme_dir):
    """Where nginx reads a TLS site's certificate chain: the path given, the ACME renewer's copy
    (it writes it unprivileged, outside the root-only key directory), or the role's own."""
    tls = site.get("tls") or {}
    if tls.get("certificate"):
        return tls["certificate"]
    return f"{acme_dir if tls.get('acme') else tls_dir}/{site['name']}/fullchain.pem"


def _check_problems(checks, where, prefix, app_names):
    """What is wrong with one app's access checks (a list of strings naming the field, never a
    token): each guards a location below ``prefix`` with a Lua token check or an auth_request."""
    if not isinstance(checks, list):
        return [f"{where}: must be a list of {{location, lua}} or {{location, auth_request}}"]
    problems = []
    for number, check in enumerate(checks):
        here = f"{where}[{number}]"
        if not isinstance(check, dict) or set(check) - ACCESS_KEYS:
            problems.append(f"{here}: must be a dict of {', '.join(sorted(ACCESS_KEYS))}")
            continue
        location = check.get("location")
        if not isinstance(location, str) or not URL_LOCATION_RE.fullmatch(location) \
                or not location.startswith(prefix) or location == prefix:
            problems.append(f"{here}.location: must be a URL path below {prefix} (got {location!r})")
        if ("lua" in check) == ("auth_request" in check):
            problems.append(f"{here}: needs exactly one of lua and auth_request")
        for kind in set(check) & set(ACCESS_KINDS):
            if not isinstance(check[kind], dict) or set(check[kind]) - ACCESS_KINDS[kind]:
                problems.append(f"{here}.{kind}: must be a dict of {' and '.join(sorted(ACCESS_KINDS[kind]))}")
        lua = check.get("lua")
        if isinstance(lua, dict):
            header = lua.get("header", "X-Access-Token")
            if not isinstance(header, str) or not HEADER_RE.fullmatch(header):
                problems.append(f"{here}.lua.header: must be a header name: letters, digits and - (got {header!r})")
            tokens = lua.get("tokens")
            if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
                problems.append(f"{here}.lua.tokens: must be a non-empty list of non-empty strings")
        auth = check.get("auth_request")
        if isinstance(auth, dict):
            path = auth.get("path")
            if not isinstance(path, str) or not URL_LOCATION_RE.fullmatch(path):
                problems.append(f"{here}.auth_request.path: must be a URL path (got {path!r})")
            if "app" in auth and app_names is not None and auth["app"] not in app_names:
                problems.append(f"{here}.auth_request.app: must be one of {', '.join(app_names)} (got {auth['app']!r})")
    return problems


PEM_RE = re.compile(r"\s*-----BEGIN")


def nginx_public_sites(sites):
    """nginx_sites with no secret left in them, for the nginx role's loops: Ansible shows each
    loop item at -v, whatever its label. Each Lua check's tokens become their SHA-1 digests
    (token_digests, all the site's config holds; tokens that are not non-empty strings stay, so
    the check still refuses them), and a given private key (tls.key_content) a placeholder that
    says whether it is PEM text. The role writes the key from nginx_sites itself, with no_log."""
    def lua(check):
        tokens = check.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            return check
        public = {key: value for key, value in check.items() if key != "tokens"}
        public["token_digests"] = sorted({hashlib.sha1(token.encode()).hexdigest() for token in tokens})
        return public

    def mount(entry):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("access"), list):
            return entry
        access = [{**check, "lua": lua(check["lua"])} if isinstance(check, Mapping) and isinstance(check.get("lua"), Mapping)
                  else check for check in entry["access"]]
        return {**entry, "access": access}

    public = []
    for site in sites if isinstance(sites, list) else []:
        site = mount(site)
        if isinstance(site, Mapping) and isinstance(site.get("mounts"), list):
            site = {**site, "mounts": [mount(entry) for entry in site["mounts"]]}
        tls = site.get("tls") if isinstance(site, Mapping) else None
        if isinstance(tls, Mapping) and "key_content" in tls:
            given = tls["key_content"]
            pem = isinstance(given, str) and PEM_RE.match(given)
            site = {**site, "tls": {**tls, "key_content": "-----BEGIN (a PEM key, hidden)" if pem else "(not PEM text)"}}
        public.append(site)
    return public


def nginx_access_problems(mounts):
    """The problems of every access check of the nginx role's mounts (each site's own app and its
    mounts), for an assert: an empty list when all are well."""
    names = [mount.get("name") for mount in mounts]
    problems = []
    for mount in mounts:
        problems += _check_problems(mount.get("access", []), f"{mount.get('name')}.access",
                                    mount.get("prefix", "/"), names)
    return problems


class FilterModule:
    def filters(self):
        return {
            "webstack_apps": webstack_apps,
            "webstack_nginx_sites": webstack_nginx_sites,
            "webstack_bad_server_names": bad_server_names,
            "webstack_select_apps": webstack_select_apps,
            "webstack_unused_server_packages": webstack_unused_server_packages,
            "webstack_unavailable_servers": webstack_unavailable_servers,
            "webstack_python_app_vars": webstack_python_app_vars,
            "webstack_python_app_problems": webstack_python_app_problems,
            "webstack_lead_hosts": webstack_lead_hosts,
            "webstack_batch_apps": webstack_batch_apps,
            "nginx_features": nginx_features,
            "nginx_subject_alt_names": nginx_subject_alt_names,
            "nginx_certificate_path": nginx_certificate_path,
            "nginx_access_problems": nginx_access_problems,
            "nginx_public_sites": nginx_public_sites,
            "webstack_layout": webstack_layout,
            "webstack_databases": webstack_databases,
            "webstack_database_url": webstack_database_url,
            "webstack_firewall_rules": webstack_firewall_rules,
            "systemd_env_value": systemd_env_value,
        }
