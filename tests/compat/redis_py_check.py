"""redis-py against a running server (port in argv[1]), in RESP2 and RESP3.

Run by tests/compat_redis_py.rs; exits non-zero with the failing check on any mismatch.
"""

import sys

import redis


def check(port: int, protocol: int) -> None:
    r = redis.Redis(port=port, protocol=protocol, decode_responses=True)
    r.flushall()
    assert r.set("a", "1") is True
    assert r.get("a") == "1"
    assert r.incr("n", 5) == 5
    pipe = r.pipeline()  # MULTI/EXEC, redis-py's default
    pipe.set("x", "1").incr("x").get("x")
    assert pipe.execute() == [True, 2, "2"]
    assert r.mset({"m1": "a", "m2": "b"})
    assert r.mget("m1", "m2", "nope") == ["a", "b", None]
    assert r.expire("a", 100) and 99 <= r.ttl("a") <= 100
    assert sorted(r.scan_iter("m*")) == ["m1", "m2"]
    assert r.dbsize() == 5
    assert r.info()["redis_version"].startswith("7")
    assert "hot_hits" in r.info("tiers")
    with r.pipeline() as watched:
        watched.watch("n")
        watched.multi()
        watched.incr("n")
        assert watched.execute() == [6]
    assert r.client_setname("compat") and r.client_getname() == "compat"


if __name__ == "__main__":
    port = int(sys.argv[1])
    for protocol in (2, 3):
        check(port, protocol)
    print(f"redis-py {redis.__version__}: RESP2 and RESP3 OK")
