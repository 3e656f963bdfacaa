"""Which address a process's TCP port listens on, read from /proc (Linux), without any tool."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    address: str  # "127.0.0.1", "0.0.0.0", "::"...
    port: int
    inode: int
    family: str  # "tcp" or "tcp6"


def _address(hex_ip: str) -> str:
    """/proc/net/tcp{,6} prints each 32-bit word of the address in host byte order."""
    raw = bytes.fromhex(hex_ip)
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    packed = b"".join(struct.pack("=I", int.from_bytes(w, "big")) for w in words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return str(ipaddress.ip_address(socket.inet_ntop(family, packed)))


def listeners(port: int) -> list[Listener]:
    """Every socket in LISTEN state on ``port`` (IPv4 and IPv6) in this network namespace."""
    out = []
    for family in ("tcp", "tcp6"):
        path = Path("/proc/net") / family
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            hex_ip, hex_port = local.split(":")
            if state == LISTEN and int(hex_port, 16) == port:
                out.append(Listener(_address(hex_ip), port, inode, family))
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
