"""An emulated Kubernetes API for Ferry's tests: kmock's in-memory
emulator (create, get, list, watch, patch, status) served on a loopback
port until killed. Usage: python3 serve.py PORT"""

import asyncio
import sys

import kmock


async def main() -> None:
    port = int(sys.argv[1])
    async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s, port=port):
        print("ready", flush=True)
        await asyncio.Event().wait()


asyncio.run(main())
