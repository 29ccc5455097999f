"""`primer serve`: an OpenAI-compatible HTTP server over a release. See primer/serve/server.py."""

from primer.serve.server import Batcher, ModelServer, RequestError

__all__ = ["ModelServer", "Batcher", "RequestError", "serve_release"]


def serve_release(release: str, store_cfg, serve_cfg, *, block: bool = True) -> ModelServer:
    """Build the server for `release` (a directory or store URI) from a `ServeConfig`; serve until interrupted
    when `block`, else start it in a background thread and return it."""
    import os

    from primer import secrets
    from primer.store import open_store

    api_key = os.environ.get(serve_cfg.api_key_env) if serve_cfg.api_key_env else None
    if serve_cfg.api_key_env and not api_key:
        from primer.errors import ConfigError

        raise ConfigError(f"serve.api_key_env: ${serve_cfg.api_key_env} is not set")
    if api_key:
        secrets.register(api_key)
    store = open_store(store_cfg) if "://" in release and not release.startswith("file://") else None
    server = ModelServer.from_release(release, store, model_name=serve_cfg.model_name, device=serve_cfg.device,
                                      dtype=serve_cfg.dtype, max_batch=serve_cfg.max_batch, host=serve_cfg.host,
                                      port=serve_cfg.port, batch_wait_ms=serve_cfg.batch_wait_ms, api_key=api_key,
                                      max_tokens_cap=serve_cfg.max_tokens_cap)
    if not block:
        return server.start()
    print(f"primer serve: model {server.model_name!r} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return server
