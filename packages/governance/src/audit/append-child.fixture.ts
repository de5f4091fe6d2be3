// Child process for the concurrent-append test and benchmark: appends N entries, prints a summary.
import { Redis } from "ioredis";
import { AuditLog } from "./audit-log.js";

const env = process.env;
const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 3 });
try {
  const log = new AuditLog({ redis, prefix: env.PREFIX as string });
  const count = Number(env.COUNT);
  const worker = env.WORKER as string;
  const startAt = Number(env.START_AT ?? 0);
  while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
  const started = performance.now();
  const seqs: number[] = [];
  for (let i = 0; i < count; i++) {
    const { seq } = await log.append({
      type: "action",
      taskId: `${worker}-task`,
      actor: worker,
      data: { tool: "get_weather", input: { city: `city-${i}` }, outcome: "ok", output: { tempC: i } },
    });
    seqs.push(seq);
  }
  process.stdout.write(JSON.stringify({ worker, seqs, elapsedMs: performance.now() - started }));
} finally {
  redis.disconnect();
}
