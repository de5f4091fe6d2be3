import { describe, expect, it } from "vitest";
import { parseEnv } from "../config/env.js";
import { parseRedisTarget } from "./connection.js";
import { redactRedisUrl } from "./redact-url.js";

describe("redis+sentinel:// URLs", () => {
  it("name the Sentinels, the master's name and the credentials", () => {
    expect(
      parseRedisTarget("redis+sentinel://u:p%40ss@10.0.0.1:26379,10.0.0.2/mymaster?sentinelPassword=s3"),
    ).toEqual({
      kind: "sentinel",
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "10.0.0.2", port: 26379 },
      ],
      name: "mymaster",
      username: "u",
      password: "p@ss",
      sentinelPassword: "s3",
      tls: false,
    });
    expect(parseRedisTarget("rediss+sentinel://10.0.0.1:5000/m")).toMatchObject({ tls: true, name: "m" });
  });

  it("refuse a URL without the master's name, or with a bad port, naming the form", () => {
    expect(() => parseRedisTarget("redis+sentinel://10.0.0.1:26379")).toThrowError(
      /names no master.*redis\+sentinel:\/\/host:port/,
    );
    expect(() => parseRedisTarget("redis+sentinel://10.0.0.1:x/m")).toThrowError(/Bad Redis Sentinel URL/);
    expect(() => parseEnv({ REDIS_URL: "redis+sentinel://10.0.0.1:26379/" })).toThrowError(/names no master/);
    expect(parseEnv({ REDIS_URL: "redis+sentinel://10.0.0.1:26379/m" }).REDIS_URL).toBe(
      "redis+sentinel://10.0.0.1:26379/m",
    );
  });
});

describe("redactRedisUrl", () => {
  it("masks the password of every URL form, the Sentinels' password, and an unescaped @ in a password", () => {
    expect(redactRedisUrl("redis://:s3cret@10.0.0.1:6379/0")).toBe("redis://:***@10.0.0.1:6379/0");
    expect(redactRedisUrl("rediss://app:s3cret@host:6380")).toBe("rediss://app:***@host:6380");
    expect(redactRedisUrl("redis+cluster://app:s3cret@h1:7000,h2:7000")).toBe(
      "redis+cluster://app:***@h1:7000,h2:7000",
    );
    expect(redactRedisUrl("redis+sentinel://app:pw@s1:26379,s2:26379/mymaster?sentinelPassword=sp&x=1")).toBe(
      "redis+sentinel://app:***@s1:26379,s2:26379/mymaster?sentinelPassword=***&x=1",
    );
    expect(redactRedisUrl("redis://app:p@ss/w@host:6379")).toBe("redis://app:***@host:6379");
    expect(redactRedisUrl("redis://host:6379")).toBe("redis://host:6379");
    expect(redactRedisUrl("redis://app@host:6379")).toBe("redis://app@host:6379");
  });
});
