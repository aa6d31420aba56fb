"""`digestd serve`: the subscribers' pages and the archive site on one server, behind a reverse proxy."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from digestd.cli.context import cli_context
from digestd.config.load import load_config
from digestd.web.server import DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT
from digestd.web.static import make_server  # every route of digestd.web, and site/ at `/`

log = logging.getLogger("digestd")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: Annotated[
            str, typer.Option(help="Address to listen on (keep it local; proxy to it).")
        ] = DEFAULT_HOST,
        port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = DEFAULT_PORT,
        idle_timeout: Annotated[
            float,
            typer.Option(help="Seconds a silent connection is kept open.", min=0.1, max=3600),
        ] = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        """Serve the subscribers' pages: one-click unsubscribe (RFC 8058), the manage page, and
        sign-up when settings.open_signup is true. A GET never changes anything."""
        cfg = load_config(cli_context(ctx).home)
        server = make_server(cfg, host, port, idle_timeout)
        bound_host, bound_port = server.server_address[:2]
        url = cfg.settings.public_url
        if url:
            where = (f"digests link to {url.rstrip('/')}/unsubscribe/… and /manage/…; "
                     "proxy them to this address")
        else:
            where = ("settings.public_url is not set, so digests still use mailto: links; "
                     "set it to the public address that proxies here")
        signup = ""
        if cfg.settings.open_signup:
            signup = ("; sign-up at /subscribe" if url else "; settings.open_signup is true, but "
                      "/subscribe stays off until settings.public_url is set")
        log.info("serving unsubscribe links on http://%s:%s/ (%s); the archive site %s at /%s",
                 bound_host, bound_port, where, cfg.paths.site, signup)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
