"""`make serve`: Tessera on this machine, with Ray's listeners on 127.0.0.1.

    python -m serve_app.run [--port 8000] [--config args.yaml]
                            [--tls-certfile cert.pem --tls-keyfile key.pem]

`serve run serve_app.builder:build_app` lets Ray pick the machine's outbound address for its
node: its GCS, raylet, agents and workers then listen on that address or on every interface.
Here the node is 127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when Ray is imported,
keeps Ray from swapping loopback for the outbound address), the dashboard is off and Serve's
HTTP proxy binds 127.0.0.1. The config file, if given, holds the app's `args` (what a Serve
config's `applications[].args` holds); without it the embedded defaults apply.

With a certificate and its key (`--tls-*`, or `TESSERA_TLS_CERTFILE` / `TESSERA_TLS_KEYFILE`,
which `make serve` passes on), Serve's own HTTP proxy speaks TLS (its `ssl_certfile` and
`ssl_keyfile` options) and every link Tessera hands out starts with https://.
"""

from __future__ import annotations

import argparse
import os

LOOPBACK = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serve_app.run")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--config", help="YAML file with the app's args")
    parser.add_argument("--tls-certfile", default=os.environ.get("TESSERA_TLS_CERTFILE"),
                        help="serve HTTPS with this PEM certificate (TESSERA_TLS_CERTFILE)")
    parser.add_argument("--tls-keyfile", default=os.environ.get("TESSERA_TLS_KEYFILE"),
                        help="the certificate's PEM private key (TESSERA_TLS_KEYFILE)")
    opts = parser.parse_args(argv)
    if bool(opts.tls_certfile) != bool(opts.tls_keyfile):
        parser.error("--tls-certfile and --tls-keyfile go together")
    for path in (opts.tls_certfile, opts.tls_keyfile):
        if path and not os.path.isfile(path):
            parser.error(f"no such file: {path}")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported

    import ray
    import yaml
    from ray import serve

    from serve_app.builder import app_config, build_app, check

    args = {}
    if opts.config:
        with open(opts.config) as f:
            args = yaml.safe_load(f) or {}
    check(app_config(args))  # a config that cannot serve stops here, before Ray starts
    http = {"host": LOOPBACK, "port": opts.port}
    if opts.tls_certfile:
        http.update(ssl_certfile=os.path.abspath(opts.tls_certfile),
                    ssl_keyfile=os.path.abspath(opts.tls_keyfile))
    ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, dashboard_host=LOOPBACK)
    serve.start(http_options=http)
    serve.run(build_app(args), name="tessera", route_prefix="/", blocking=True)


if __name__ == "__main__":
    main()
