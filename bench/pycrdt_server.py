"""pycrdt-websocket (the Jupyter collaboration server core) behind uvicorn, for bench/run.

Rooms are the URL path, as with y-websocket; documents live in memory. Listens on HOST:PORT.
"""

import asyncio
import os

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer


async def main() -> None:
    websocket_server = WebsocketServer()
    app = ASGIServer(websocket_server)
    config = uvicorn.Config(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ["PORT"]),
        log_level="warning",
        ws_max_size=16 * 1024 * 1024,
    )
    async with websocket_server:
        await uvicorn.Server(config).serve()


asyncio.run(main())
