"""The API server the HTTP scenarios load: ``consent_api.app.create_app`` on uvicorn, as ``serve`` runs it,
plus one trivial endpoint (``GET /bench/trivial``) on the same app, the same middleware and the same server.

Settings come from ``CONSENT_LEDGER_*`` variables (see :meth:`benchmarks._common.Stack.env`). Not a benchmark.

    python -m benchmarks._server --port P
"""

from __future__ import annotations

import argparse
import logging

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    from consent_api.app import create_app
    from ledger_service.bootstrap import bootstrap
    from ledger_service.chain.deploy import Deployment
    from ledger_service.settings import Settings

    settings = Settings()
    services = bootstrap(settings, Deployment.load(settings.deployment_file))
    services.indexer.catch_up()
    services.start_background()
    app = create_app(services)

    def trivial() -> dict[str, bool]:
        return {"ok": True}

    # A sync endpoint, like the record routes: it runs on the same thread pool.
    app.add_api_route("/bench/trivial", trivial, methods=["GET"])
    logging.basicConfig(level=logging.WARNING)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    finally:
        services.close()


if __name__ == "__main__":
    main()
