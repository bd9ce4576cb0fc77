"""Interop check against aioice (PyPI), a STUN/ICE implementation not written here.

Usage: python aioice_srflx.py PORT   (a peerline-stun responder listening on 127.0.0.1:PORT)
Run by tests/interop.rs (ignored by default). Exits non-zero on any mismatch.
"""
import asyncio, socket, sys
import aioice
from aioice import stun

PORT = int(sys.argv[1])

async def main():
    # 1. aioice's own STUN encoder/decoder against the responder, IPv4.
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.bind(("127.0.0.1", 0))
    req = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    req.add_fingerprint()
    s.sendto(bytes(req), ("127.0.0.1", PORT))
    data, _ = s.recvfrom(2048)
    resp = stun.parse_message(data)
    assert resp.message_class == stun.Class.RESPONSE and resp.transaction_id == req.transaction_id
    assert resp.attributes["XOR-MAPPED-ADDRESS"] == s.getsockname(), resp.attributes
    assert "FINGERPRINT" in resp.attributes
    print("aioice.stun decoded", resp.attributes["XOR-MAPPED-ADDRESS"], "len", len(data), "request", len(bytes(req)))

    # 2. A real ICE agent gathering a server-reflexive candidate through the responder.
    conn = aioice.Connection(ice_controlling=True, stun_server=("127.0.0.1", PORT))
    await conn.gather_candidates()
    for c in conn.local_candidates:
        print("candidate", c.type, c.host, c.port, "related", c.related_address, c.related_port)
    assert any(c.type == "srflx" for c in conn.local_candidates), "no server-reflexive candidate"
    await conn.close()

asyncio.run(main())
