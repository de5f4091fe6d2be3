import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { QueueKeys } from "bullmq";
import { ConfigMap, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { CronJob } from "kubernetes-models/batch/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { DEFAULT_QUEUE_NAME } from "@agentry/runtime";

// Offline schema check of infra/k8s: core objects against the Kubernetes 1.27 JSON schemas
// bundled in `kubernetes-models` (types, required fields, enums); KEDA's CRDs, which those
// schemas do not cover, against the fields KEDA documents. Then the references between
// objects, which no schema sees.

const repo = fileURLToPath(new URL("../../", import.meta.url));
const dir = join(repo, "infra/k8s");

type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [k: string]: unknown;
};
const manifests: { file: string; doc: Manifest }[] = readdirSync(dir)
  .filter((f) => f.endsWith(".yaml"))
  .sort()
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), "utf8")).map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
      return { file, doc: d.toJS() as Manifest };
    }),
  );
const find = (kind: string, name: string) =>
  manifests.find((m) => m.doc.kind === kind && m.doc.metadata.name === name)?.doc;

/** Validators of the core kinds, from kubernetes-models' bundled JSON schemas. */
const coreModels: Record<string, (doc: Manifest) => { validate(): void }> = {
  "apps/v1/Deployment": (d) => new Deployment(d as never),
  "v1/Service": (d) => new Service(d as never),
  "v1/ConfigMap": (d) => new ConfigMap(d as never),
  "v1/Secret": (d) => new Secret(d as never),
  "v1/PersistentVolumeClaim": (d) => new PersistentVolumeClaim(d as never),
  "batch/v1/CronJob": (d) => new CronJob(d as never),
};

interface Container {
  name: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  envFrom?: { configMapRef?: { name: string } }[];
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface DeploymentDoc extends Manifest {
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        terminationGracePeriodSeconds?: number;
        containers: Container[];
        volumes?: { configMap?: { name: string } }[];
      };
    };
  };
}
const deployment = (name: string) => {
  const d = find("Deployment", name) as DeploymentDoc | undefined;
  if (!d) throw new Error(`no Deployment ${name} in infra/k8s`);
  return d;
};
const config = () =>
  (find("ConfigMap", "agentry-config") as unknown as { data: Record<string, string> }).data;
const secretKeys = () =>
  Object.keys(
    (find("Secret", "agentry-secrets") as unknown as { stringData: Record<string, string> }).stringData,
  );

describe("infra/k8s manifests", () => {
  it("contain the worker and producer Deployments, the producer Service and a KEDA ScaledObject", () => {
    expect(manifests.map((m) => `${m.doc.kind}/${m.doc.metadata.name}`)).toEqual(
      expect.arrayContaining([
        "Deployment/agentry-worker",
        "Deployment/agentry-producer",
        "Service/agentry-producer",
        "ScaledObject/agentry-worker",
      ]),
    );
  });

  it.each(
    manifests
      .filter((m) => !m.doc.apiVersion.startsWith("keda.sh/"))
      .map((m) => [`${m.file}: ${m.doc.kind}/${m.doc.metadata?.name}`, m.doc] as const),
  )("%s validates against the Kubernetes schema", (_name, doc) => {
    const model = coreModels[`${doc.apiVersion}/${doc.kind}`];
    expect(model, `no schema for ${doc.apiVersion} ${doc.kind}: add it to coreModels`).toBeDefined();
    expect(() => model?.(doc).validate()).not.toThrow();
  });

  it("a manifest with a wrong type or a missing required field is refused (the check has teeth)", () => {
    const broken = structuredClone(deployment("agentry-worker"));
    (broken.spec.template.spec.containers[0] as unknown as { ports: { containerPort: string }[] }).ports = [
      { containerPort: "9464" },
    ];
    expect(() => new Deployment(broken as never).validate()).toThrow(/containerPort/);
    const noSelector = structuredClone(deployment("agentry-worker")) as Partial<DeploymentDoc["spec"]> &
      DeploymentDoc;
    delete (noSelector.spec as Partial<DeploymentDoc["spec"]>).selector;
    expect(() => new Deployment(noSelector as never).validate()).toThrow(/selector/);
  });

  it("selectors match their pod labels and the Service targets a declared port", () => {
    for (const name of ["agentry-worker", "agentry-producer"]) {
      const d = deployment(name);
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
    }
    const service = find("Service", "agentry-producer") as unknown as {
      spec: { selector: Record<string, string>; ports: { targetPort: string }[] };
    };
    const producer = deployment("agentry-producer");
    expect(producer.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    const portNames = producer.spec.template.spec.containers.flatMap(
      (c) => c.ports?.map((p) => p.name) ?? [],
    );
    for (const p of service.spec.ports) expect(portNames).toContain(p.targetPort);
  });

  it("the worker is probed on /healthz of its ops port and outlives its shutdown grace", () => {
    const worker = deployment("agentry-worker");
    const container = worker.spec.template.spec.containers[0] as Container;
    expect(container.args).toEqual(["worker"]);
    const opsPort = container.ports?.find((p) => p.name === "ops")?.containerPort;
    expect(String(opsPort)).toBe(container.env?.find((e) => e.name === "AGENTRY_WORKER_PORT")?.value);
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      expect(probe?.httpGet).toEqual({ path: "/healthz", port: "ops" });
    }
    expect(container.resources?.requests).toBeDefined();
    expect(container.resources?.limits?.memory).toBeDefined();
    const graceMs = Number(config().AGENTRY_SHUTDOWN_GRACE_MS);
    expect(graceMs).toBeGreaterThan(0);
    expect((worker.spec.template.spec.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(graceMs);
    expect(deployment("agentry-producer").spec.template.spec.containers[0]?.args).toEqual(["producer"]);
  });

  it("every Secret key, ConfigMap and approvers volume a Deployment uses is defined", () => {
    const keys = secretKeys();
    for (const name of ["agentry-worker", "agentry-producer"]) {
      const spec = deployment(name).spec.template.spec;
      for (const c of spec.containers) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) {
            expect(ref.name).toBe("agentry-secrets");
            expect(keys, `${name}: ${e.name}`).toContain(ref.key);
          }
        }
        for (const from of c.envFrom ?? [])
          if (from.configMapRef) expect(find("ConfigMap", from.configMapRef.name)).toBeDefined();
      }
      for (const v of spec.volumes ?? [])
        if (v.configMap) expect(find("ConfigMap", v.configMap.name)).toBeDefined();
    }
  });
});

describe("audit anchor CronJob", () => {
  interface CronJobDoc extends Manifest {
    spec: {
      schedule: string;
      concurrencyPolicy?: string;
      jobTemplate: {
        spec: {
          template: {
            spec: {
              containers: (Container & { volumeMounts?: { name: string; mountPath: string }[] })[];
              volumes?: { name: string; persistentVolumeClaim?: { claimName: string } }[];
            };
          };
        };
      };
    };
  }
  const cron = find("CronJob", "agentry-audit-anchor") as CronJobDoc | undefined;

  it("runs `agentry audit anchor` into a persistent volume, one run at a time, with the audit key and a read-only Redis user", () => {
    expect(cron).toBeDefined();
    const spec = (cron as CronJobDoc).spec;
    expect(spec.schedule.split(" ")).toHaveLength(5);
    expect(spec.concurrencyPolicy).toBe("Forbid");
    const pod = spec.jobTemplate.spec.template.spec;
    const container = pod.containers[0] as Container & {
      volumeMounts?: { name: string; mountPath: string }[];
    };
    const out = container.args?.slice(0, 4);
    expect(out).toEqual(["agentry", "audit", "anchor", "--out"]);
    const file = container.args?.[4] as string;
    const mount = container.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
    expect(mount, `no volume mounted over ${file}`).toBeDefined();
    const claim = pod.volumes?.find((v) => v.name === mount?.name)?.persistentVolumeClaim?.claimName;
    expect(find("PersistentVolumeClaim", claim ?? "")).toBeDefined();
    const keys = secretKeys();
    const fromSecret = (name: string) => container.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
    expect(fromSecret("AGENTRY_AUDIT_KEY")).toEqual({ name: "agentry-secrets", key: "AGENTRY_AUDIT_KEY" });
    expect(fromSecret("REDIS_URL")?.key).toBe("ADMIN_REDIS_URL");
    for (const e of container.env ?? [])
      if (e.valueFrom?.secretKeyRef) expect(keys).toContain(e.valueFrom.secretKeyRef.key);
    for (const from of container.envFrom ?? [])
      if (from.configMapRef) expect(find("ConfigMap", from.configMapRef.name)).toBeDefined();
  });

  it("archives with `agentry audit archive` into the anchors' volume, as the auditor user, at a minute the anchors never run", () => {
    const archive = find("CronJob", "agentry-audit-archive") as CronJobDoc | undefined;
    expect(archive).toBeDefined();
    const spec = (archive as CronJobDoc).spec;
    expect(spec.concurrencyPolicy).toBe("Forbid");
    const [minute] = spec.schedule.split(" ");
    expect(Number(minute) % 15).not.toBe(0);
    const pod = spec.jobTemplate.spec.template.spec;
    const container = pod.containers[0] as Container & {
      volumeMounts?: { name: string; mountPath: string }[];
    };
    expect(container.args?.slice(0, 3)).toEqual(["agentry", "audit", "archive"]);
    const flag = (name: string) => container.args?.[(container.args?.indexOf(name) ?? -2) + 1] as string;
    // The same anchors file the anchor CronJob writes: an archive anchor joins its lines.
    const anchorArgs = (cron as CronJobDoc).spec.jobTemplate.spec.template.spec.containers[0]?.args ?? [];
    expect(flag("--anchors")).toBe(anchorArgs[4]);
    const mount = container.volumeMounts?.find((m) => flag("--out").startsWith(`${m.mountPath}/`));
    expect(mount).toBeDefined();
    expect(pod.volumes?.find((v) => v.name === mount?.name)?.persistentVolumeClaim?.claimName).toBe(
      "agentry-audit-anchors",
    );
    const fromSecret = (name: string) => container.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
    expect(fromSecret("REDIS_URL")?.key).toBe("AUDITOR_REDIS_URL");
    expect(secretKeys()).toContain("AUDITOR_REDIS_URL");
    expect(fromSecret("AGENTRY_AUDIT_KEY")).toEqual({ name: "agentry-secrets", key: "AGENTRY_AUDIT_KEY" });
  });

  it("every writer of the audit log gets the same AGENTRY_AUDIT_KEY", () => {
    for (const name of ["agentry-worker", "agentry-producer"]) {
      const env = deployment(name).spec.template.spec.containers[0]?.env ?? [];
      expect(env.find((e) => e.name === "AGENTRY_AUDIT_KEY")?.valueFrom?.secretKeyRef, name).toEqual({
        name: "agentry-secrets",
        key: "AGENTRY_AUDIT_KEY",
      });
    }
  });
});

describe("KEDA ScaledObject (keda.sh/v1alpha1, checked against KEDA's documented fields)", () => {
  interface Trigger {
    type: string;
    metadata: Record<string, unknown>;
    authenticationRef?: { name: string };
  }
  const scaled = find("ScaledObject", "agentry-worker") as unknown as Manifest & {
    spec: {
      scaleTargetRef: { name: string; kind?: string; apiVersion?: string };
      minReplicaCount?: number;
      maxReplicaCount?: number;
      pollingInterval?: number;
      cooldownPeriod?: number;
      triggers: Trigger[];
    };
  };
  const auth = find("TriggerAuthentication", "agentry-redis-keda") as unknown as Manifest & {
    spec: { secretTargetRef: { parameter: string; name: string; key: string }[] };
  };

  it("has the ScaledObject's required and typed fields", () => {
    expect(scaled.apiVersion).toBe("keda.sh/v1alpha1");
    const allowed = [
      "scaleTargetRef",
      "minReplicaCount",
      "maxReplicaCount",
      "pollingInterval",
      "cooldownPeriod",
      "idleReplicaCount",
      "initialCooldownPeriod",
      "fallback",
      "advanced",
      "triggers",
    ];
    for (const key of Object.keys(scaled.spec))
      expect(allowed, `unknown ScaledObject field spec.${key}`).toContain(key);
    expect(typeof scaled.spec.scaleTargetRef.name).toBe("string");
    for (const n of ["minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"] as const) {
      expect(Number.isInteger(scaled.spec[n]) && (scaled.spec[n] as number) >= 0, n).toBe(true);
    }
    expect(scaled.spec.minReplicaCount as number).toBeLessThanOrEqual(scaled.spec.maxReplicaCount as number);
    expect(scaled.spec.triggers.length).toBeGreaterThan(0);
  });

  it("scales the worker Deployment", () => {
    expect(scaled.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "agentry-worker" });
    expect(find("Deployment", scaled.spec.scaleTargetRef.name)).toBeDefined();
  });

  it("watches BullMQ's prioritized set (fair share) and wait list of the task queue under the configured prefix", () => {
    const triggers = scaled.spec.triggers.filter((t) => t.type === "redis");
    const prefix = config().AGENTRY_PREFIX as string;
    // BullMQ's own key naming, not a copy of it.
    expect(triggers.map((t) => t.metadata.listName).sort()).toEqual(
      [
        new QueueKeys(prefix).toKey(DEFAULT_QUEUE_NAME, "prioritized"),
        new QueueKeys(prefix).toKey(DEFAULT_QUEUE_NAME, "wait"),
      ].sort(),
    );
    expect(triggers.map((t) => t.metadata.listName).sort()).toEqual([
      "{agentry}:tasks:prioritized",
      "{agentry}:tasks:wait",
    ]);
    for (const trigger of triggers) {
      // KEDA's redis scaler: metadata values are strings; listName and listLength are required.
      for (const [k, v] of Object.entries(trigger.metadata)) expect(typeof v, `metadata.${k}`).toBe("string");
      expect(trigger.metadata.listLength).toMatch(/^[1-9]\d*$/);
      expect(trigger.metadata.activationListLength ?? "0").toMatch(/^\d+$/);
      expect(String(trigger.metadata.address ?? `${trigger.metadata.host}:${trigger.metadata.port}`)).toMatch(
        /^[\w.-]+:\d+$/,
      );
      const known = [
        "address",
        "host",
        "port",
        "addressFromEnv",
        "hostFromEnv",
        "portFromEnv",
        "usernameFromEnv",
        "passwordFromEnv",
        "listName",
        "listLength",
        "activationListLength",
        "enableTLS",
        "unsafeSsl",
        "databaseIndex",
      ];
      for (const k of Object.keys(trigger.metadata))
        expect(known, `unknown redis scaler field ${k}`).toContain(k);
    }
  });

  it("authenticates through a TriggerAuthentication whose secret keys exist", () => {
    for (const trigger of scaled.spec.triggers)
      expect(trigger.authenticationRef?.name).toBe(auth.metadata.name);
    expect(auth.apiVersion).toBe("keda.sh/v1alpha1");
    const keys = secretKeys();
    for (const ref of auth.spec.secretTargetRef) {
      expect(["username", "password", "tls", "ca", "cert", "key"]).toContain(ref.parameter);
      expect(ref.name).toBe("agentry-secrets");
      expect(keys).toContain(ref.key);
    }
  });
});
