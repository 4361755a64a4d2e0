"""Old import name of :mod:`gdnlab.traces.synthetic`; import ``gdnlab.traces.synthetic`` instead."""
from gdnlab.traces.synthetic import (
    DECODE_KERNELS,
    H100,
    HANDMADE_EXPECTED,
    NVTX_DOMAIN_CREATE,
    NVTX_PUSHPOP,
    NVTX_STARTEND,
    SCHEMAS,
    Builder,
    Synthetic,
    decode_loop,
    global_pid,
    global_tid,
    handmade,
    kineto_dict,
    short_of,
    write_kineto_json,
    write_nsys_sqlite,
)

__all__ = ["Synthetic", "Builder", "decode_loop", "handmade", "HANDMADE_EXPECTED", "write_nsys_sqlite",
           "kineto_dict", "write_kineto_json", "global_pid", "global_tid", "short_of", "SCHEMAS", "H100",
           "DECODE_KERNELS", "NVTX_PUSHPOP", "NVTX_STARTEND", "NVTX_DOMAIN_CREATE"]
