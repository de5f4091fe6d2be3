import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

// No Docker engine is needed (or used): these tests check the compose file and the Dockerfile
// structurally, against the files they mount and the variables the apps really read. Where a
// Compose client is installed (`docker compose`, or Debian's `docker-compose`), it validates the
// file too; `config` needs no engine.

const repo = fileURLToPath(new URL("../../", import.meta.url));
const read = (rel: string) => readFileSync(join(repo, rel), "utf8");

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
}
const compose = parse(read("docker-compose.yml"), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const services = compose.services;
const service = (name: string): Service => {
  const s = services[name];
  if (!s) throw new Error(`docker-compose.yml has no service ${name}`);
  return s;
};

/** `user password` pairs of infra/redis/users.acl (`>password` rules). */
const aclPasswords = new Map(
  read("infra/redis/users.acl")
    .split("\n")
    .map((line) => /^user (\S+) .*?>(\S+)/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1] as string, m[2] as string]),
);

/** Every environment variable name the apps and the shared env contract read. */
const knownEnv = (() => {
  const files = [
    "packages/core/src/config/env.ts",
    "apps/worker/src/config.ts",
    ...readdirSync(join(repo, "apps/producer/src/config")).map((f) => `apps/producer/src/config/${f}`),
  ];
  return new Set(
    files.flatMap((f) => [...read(f).matchAll(/\b([A-Z][A-Z0-9_]{2,})\s*:/g)].map((m) => m[1] as string)),
  );
})();

const seconds = (d: string | undefined) => {
  const m = /^(\d+)(ms|s|m)$/.exec(d ?? "");
  if (!m) return 10; // compose's default
  return Number(m[1]) * (m[2] === "ms" ? 0.001 : m[2] === "m" ? 60 : 1);
};

/** The installed Compose client, as a command line, or undefined. */
const composeCommand = (() => {
  for (const argv of [["docker", "compose"], ["docker-compose"]]) {
    const probe = spawnSync(argv[0] as string, [...argv.slice(1), "version"], { encoding: "utf8" });
    if (probe.status === 0) return argv;
  }
  return undefined;
})();

describe("docker-compose.yml", () => {
  it.runIf(composeCommand)(
    "is a valid Compose file for the installed Compose client (`config`, no engine)",
    () => {
      const [command, ...rest] = composeCommand as string[];
      const result = spawnSync(
        command as string,
        [...rest, "--file", join(repo, "docker-compose.yml"), "config", "--quiet"],
        {
          encoding: "utf8",
          env: { ...process.env, ANTHROPIC_API_KEY: "", AGENTRY_API_KEYS: "" },
        },
      );
      expect(result.status, result.stderr).toBe(0);
    },
  );

  it("runs redis, jaeger, the producer and several workers", () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(["redis", "jaeger", "producer", "worker"]));
    expect(service("worker").deploy?.replicas).toBeGreaterThanOrEqual(2);
  });

  it("mounts files that exist, and Redis loads the mounted config and ACL file", () => {
    for (const [name, s] of Object.entries(services)) {
      for (const volume of s.volumes ?? []) {
        const source = volume.split(":")[0] as string;
        if (source.startsWith("./")) expect(existsSync(join(repo, source)), `${name}: ${volume}`).toBe(true);
        else if (!source.startsWith("$") && !source.startsWith("/"))
          expect(compose.volumes ?? {}, `${name}: named volume ${source}`).toHaveProperty(source);
      }
    }
    const redis = service("redis");
    expect(redis.image).toMatch(/^redis:7/);
    const mountOf = (file: string) =>
      redis.volumes?.find((v) => v.startsWith(`./infra/redis/${file}:`))?.split(":")[1];
    expect(redis.command).toContain(mountOf("redis.conf"));
    const conf = read("infra/redis/redis.conf");
    expect(conf).toMatch(new RegExp(`^aclfile ${mountOf("users.acl")}$`, "m"));
    expect(conf).toMatch(/^appendonly yes$/m);
    expect(conf).toMatch(/^maxmemory-policy noeviction$/m);
    expect(redis.volumes?.some((v) => v.endsWith(":/data"))).toBe(true);
  });

  it("gives each app its own ACL user with the password from users.acl", () => {
    for (const [name, user] of [
      ["producer", "producer"],
      ["worker", "worker"],
      ["admin", "admin"],
    ] as const) {
      const url = new URL(service(name).environment?.REDIS_URL ?? "");
      expect(url.hostname).toBe("redis");
      expect(url.username).toBe(user);
      expect(url.password).toBe(aclPasswords.get(user));
    }
  });

  it("runs Jaeger v2 with OTLP on 4317 and 4318 and its UI on 16686, bound for other containers", () => {
    const jaeger = service("jaeger");
    expect(jaeger.image).toMatch(/^jaegertracing\/jaeger:2\.\d+\.\d+$/);
    expect(jaeger.ports).toEqual(expect.arrayContaining(["16686:16686", "4317:4317", "4318:4318"]));
    // Jaeger v1's switch means nothing to v2: OTLP is always on.
    expect(jaeger.environment?.COLLECTOR_OTLP_ENABLED).toBeUndefined();
    expect(jaeger.command).toEqual(
      expect.arrayContaining([
        "--set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:4317",
        "--set=receivers.otlp.protocols.http.endpoint=0.0.0.0:4318",
      ]),
    );
  });

  it("sends traces to Jaeger's OTLP HTTP port", () => {
    for (const name of ["producer", "worker"]) {
      expect(service(name).environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe("http://jaeger:4318");
    }
  });

  it("publishes the producer on 8080 and health-checks both apps on their /healthz", () => {
    const producer = service("producer");
    expect(producer.ports).toContain("8080:8080");
    expect(producer.environment?.PORT).toBe("8080");
    expect(producer.healthcheck?.test.join(" ")).toContain("127.0.0.1:8080/healthz");
    const worker = service("worker");
    const port = worker.environment?.AGENTRY_WORKER_PORT;
    expect(worker.healthcheck?.test.join(" ")).toContain(`127.0.0.1:${port}/healthz`);
    expect(service("redis").healthcheck?.test).toEqual(["CMD", "redis-cli", "ping"]);
    expect(worker.depends_on?.redis?.condition).toBe("service_healthy");
  });

  it("lets a worker finish its running steps before it is killed", () => {
    const worker = service("worker");
    const graceMs = Number(worker.environment?.AGENTRY_SHUTDOWN_GRACE_MS ?? 10_000);
    expect(seconds(worker.stop_grace_period) * 1000).toBeGreaterThan(graceMs);
  });

  it("sets only environment variables the apps read", () => {
    for (const [name, s] of Object.entries(services)) {
      if (!["producer", "worker", "admin"].includes(name)) continue;
      for (const variable of Object.keys(s.environment ?? {})) {
        expect(knownEnv.has(variable), `${name}: ${variable} is read by no app`).toBe(true);
      }
    }
  });

  it("runs every app from the one image, chosen by the command", () => {
    expect(service("producer").build).toBeDefined();
    const image = service("producer").image;
    for (const name of ["worker", "admin"]) expect(service(name).image).toBe(image);
    expect(service("producer").command).toEqual(["producer"]);
    expect(service("worker").command).toEqual(["worker"]);
    const entry = read("scripts/docker-entrypoint.sh");
    for (const word of ["worker)", "producer)", "agentry |"]) expect(entry).toContain(word);
  });
});

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");
  const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({
    image: m[1] as string,
    stage: m[2],
  }));
  const args = Object.fromEntries([...dockerfile.matchAll(/^ARG\s+(\w+)=(\S+)/gm)].map((m) => [m[1], m[2]]));
  const resolveImage = (image: string) => image.replace(/\$\{(\w+)\}/g, (_, n: string) => String(args[n]));

  it("is multi-stage, on Node 24, and refers only to stages it defines", () => {
    expect(froms.length).toBeGreaterThanOrEqual(3);
    const stages = new Set(froms.map((f) => f.stage).filter(Boolean));
    for (const from of froms)
      expect(resolveImage(from.image).startsWith("node:24") || stages.has(from.image)).toBe(true);
    for (const m of dockerfile.matchAll(/--from=(\S+)/g)) expect(stages.has(m[1] as string), m[0]).toBe(true);
  });

  it("installs with the frozen lockfile and ships production dependencies only", () => {
    expect(dockerfile).toMatch(/pnpm install --frozen-lockfile\b/);
    expect(dockerfile).toMatch(/pnpm install --frozen-lockfile --prod/);
    expect(dockerfile).toMatch(/corepack enable/);
  });

  it("runs as a non-root user with the entrypoint that selects the app", () => {
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    expect(runtime).toMatch(/^USER (?!root\b)\S+/m);
    expect(runtime).toMatch(/scripts\/docker-entrypoint\.sh/);
    expect(runtime).not.toMatch(/corepack|pnpm install/);
    for (const m of dockerfile.matchAll(/\/repo\/(scripts\/[\w./-]+)/g))
      expect(existsSync(join(repo, m[1] as string)), m[1]).toBe(true);
  });

  it("keeps dependencies, build output and git out of the build context", () => {
    const ignore = read(".dockerignore").split("\n");
    for (const entry of ["**/node_modules", "**/dist", ".git"]) expect(ignore).toContain(entry);
  });
});
