"""Serve API + portal with uvicorn on a started runtime (chain up, contracts deployed)."""

from __future__ import annotations

import logging
import threading

import uvicorn

from consent_api.app import create_app
from ledger_service.bootstrap import bootstrap
from ledger_service.runtime import Runtime

log = logging.getLogger("consent_api")


def serve(runtime: Runtime, stop: threading.Event) -> None:
    """Run until Ctrl+C, SIGTERM or ``stop``; resolves work a crash left half-done first."""
    settings = runtime.settings
    services = bootstrap(settings, runtime.deployment)
    try:
        finished, discarded = services.records.recover_pending()
        erasures = services.records.finish_interrupted_erasures()
        if finished or discarded or erasures:
            print(f"recovered: {finished} anchored, {discarded} discarded, {erasures} erasures completed", flush=True)
        services.indexer.catch_up()
        services.start_background()
        app = create_app(services)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)

        def watch() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="stop-watch", daemon=True).start()
        print(f"portal  http://{settings.host}:{settings.port}/", flush=True)
        print(f"API     http://{settings.host}:{settings.port}/docs  (OpenAPI at /openapi.json)", flush=True)
        print("press Ctrl+C to stop (state is saved in the data dir)", flush=True)
        server.run()
    finally:
        services.close()
