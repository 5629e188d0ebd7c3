#!/usr/bin/env python3
"""Probe which eBPF operations the current process's capabilities allow, with raw bpf(2) calls.

Loads and attaches minimal programs of every type the gateway uses (cgroup/connect4, sock_ops,
sk_msg on a SOCKHASH, tp_btf) plus a hash map, and prints one JSON object: operation -> "ok" or
the errno name. Run it under `setpriv` with a candidate capability set to find out whether the
set is enough (tests/python/test_deploy_caps.py does that for the chart's and the unit's sets).

No eBPF toolchain needed: the programs are two instructions each ("return 1" / "return 0").
Usage: ebpf_caps_probe.py CGROUP_DIR   (a cgroup v2 directory to attach to, then detach from)
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import subprocess
import sys

SYS_BPF = 321  # x86_64
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_LINK_CREATE = 0, 5, 8, 28

PROG_SOCK_OPS, PROG_SK_MSG, PROG_CGROUP_SOCK_ADDR, PROG_TRACING = 13, 16, 18, 26
ATTACH_CGROUP_SOCK_OPS, ATTACH_SK_MSG_VERDICT, ATTACH_CGROUP_INET4_CONNECT, ATTACH_TRACE_RAW_TP = 3, 7, 10, 23
MAP_HASH, MAP_SOCKHASH = 1, 18

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    ret = libc.syscall(SYS_BPF, cmd, buf, 128)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, errno.errorcode.get(err, str(err)))
    return ret


def insns(ret: int) -> bytes:
    mov_r0 = struct.pack("<BBhi", 0xB7, 0x00, 0, ret)  # r0 = ret
    exit_ = struct.pack("<BBhi", 0x95, 0x00, 0, 0)  # exit
    return mov_r0 + exit_


_keep: list[object] = []  # buffers whose addresses the kernel reads during the call


def prog_load(prog_type: int, attach_type: int = 0, ret: int = 1, btf_id: int = 0) -> int:
    code = ctypes.create_string_buffer(insns(ret), 16)
    lic = ctypes.create_string_buffer(b"GPL")
    _keep.extend([code, lic])
    attr = struct.pack(
        "<IIQQIIQII16sII",
        prog_type,
        2,
        ctypes.addressof(code),
        ctypes.addressof(lic),
        0,
        0,
        0,
        0,
        0,
        b"probe",
        0,
        attach_type,
    )
    attr = attr.ljust(108, b"\0") + struct.pack("<I", btf_id)  # attach_btf_id at offset 108
    return bpf(BPF_PROG_LOAD, attr)


def map_create(map_type: int, key: int, value: int) -> int:
    return bpf(BPF_MAP_CREATE, struct.pack("<IIIII", map_type, key, value, 16, 0))


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    return bpf(BPF_LINK_CREATE, struct.pack("<IIII", prog_fd, target_fd, attach_type, 0))


def btf_type_id(name: str) -> int:
    """BTF id of a type in vmlinux, via bpftool (read-only, any capability)."""
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if f"'{name}'" in line and line.startswith("["):
            return int(line[1 : line.index("]")])
    raise LookupError(name)


def main() -> int:
    cgroup = sys.argv[1]
    results: dict[str, str] = {}

    def attempt(op, fn):
        try:
            results[op] = "ok"
            return fn()
        except (OSError, LookupError, subprocess.CalledProcessError) as err:
            results[op] = getattr(err, "strerror", None) or type(err).__name__
            return None

    cg_fd = attempt("open_cgroup", lambda: os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY))
    attempt("map_create_hash", lambda: map_create(MAP_HASH, 4, 8))
    p = attempt("load_connect4", lambda: prog_load(PROG_CGROUP_SOCK_ADDR, ATTACH_CGROUP_INET4_CONNECT))
    if p is not None and cg_fd is not None:
        attempt("attach_connect4", lambda: link_create(p, cg_fd, ATTACH_CGROUP_INET4_CONNECT))
    p = attempt("load_sock_ops", lambda: prog_load(PROG_SOCK_OPS))
    if p is not None and cg_fd is not None:
        attempt("attach_sock_ops", lambda: link_create(p, cg_fd, ATTACH_CGROUP_SOCK_OPS))
    sockhash = attempt("map_create_sockhash", lambda: map_create(MAP_SOCKHASH, 4, 4))
    p = attempt("load_sk_msg", lambda: prog_load(PROG_SK_MSG, ret=1))
    if p is not None and sockhash is not None:
        attempt(
            "attach_sk_msg",
            lambda: bpf(BPF_PROG_ATTACH, struct.pack("<IIII", sockhash, p, ATTACH_SK_MSG_VERDICT, 0)),
        )
    btf_id = attempt("btf_lookup", lambda: btf_type_id("btf_trace_inet_sock_set_state"))
    if btf_id is not None:
        p = attempt("load_tp_btf", lambda: prog_load(PROG_TRACING, ATTACH_TRACE_RAW_TP, ret=0, btf_id=btf_id))
        if p is not None:
            attempt("attach_tp_btf", lambda: link_create(p, 0, ATTACH_TRACE_RAW_TP))
    print(json.dumps(results, sort_keys=True))
    return 0  # links close with the process: nothing stays attached


if __name__ == "__main__":
    sys.exit(main())
