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
    check_hashes_and_sets(r)


def check_hashes_and_sets(r: redis.Redis) -> None:
    """Issue 17: a session store in a hash and a tag index in sets, as apps write them."""
    session = "session:42"
    assert r.hset(session, mapping={"user": "ada", "cart": "3", "theme": "dark"}) == 3
    assert r.expire(session, 1800) and 1799 <= r.ttl(session) <= 1800
    assert r.hincrby(session, "cart", 2) == 5
    assert r.hgetall(session) == {"user": "ada", "cart": "5", "theme": "dark"}
    assert r.hmget(session, ["user", "nope"]) == ["ada", None]
    assert dict(r.hscan_iter(session, match="c*")) == {"cart": "5"}
    assert r.hdel(session, "theme", "nope") == 1 and r.hlen(session) == 2
    docs = {"d1": ["rust", "cache"], "d2": ["rust", "db"], "d3": ["cache", "db", "rust"]}
    for doc, tags in docs.items():
        for tag in tags:
            r.sadd(f"tag:{tag}", doc)
    assert r.sinter("tag:rust", "tag:cache") == {"d1", "d3"}
    assert r.sinterstore("hits", ["tag:rust", "tag:db"]) == 2
    assert r.smembers("hits") == {"d2", "d3"}
    assert sorted(r.sscan_iter("tag:rust")) == ["d1", "d2", "d3"]
    assert r.smismember("tag:db", ["d1", "d2"]) == [0, 1]
    assert r.type(session) == "hash" and r.type("hits") == "set"
    try:
        r.get(session)
        raise AssertionError("GET of a hash must fail")
    except redis.ResponseError as err:
        assert str(err).startswith("WRONGTYPE"), err


if __name__ == "__main__":
    port = int(sys.argv[1])
    for protocol in (2, 3):
        check(port, protocol)
    print(f"redis-py {redis.__version__}: RESP2 and RESP3 OK")
