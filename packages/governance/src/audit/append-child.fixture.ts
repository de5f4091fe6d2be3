// Child process for the concurrent-append tests and benchmark: appends N entries (or until
// STOP_KEY exists), optionally keyed (KEY) and deduplicated (ONCE: once ids `<ONCE>:<i>`),
// and prints a summary.
import { Redis } from "ioredis";
import { AuditLog } from "./audit-log.js";

const env = process.env;
const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 3 });
try {
  const log = new AuditLog({ redis, prefix: env.PREFIX as string, ...(env.KEY ? { key: env.KEY } : {}) });
  const count = env.COUNT ? Number(env.COUNT) : Number.POSITIVE_INFINITY;
  const worker = env.WORKER as string;
  const startAt = Number(env.START_AT ?? 0);
  while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
  const started = performance.now();
  const seqs: number[] = [];
  let duplicates = 0;
  for (let i = 0; i < count; i++) {
    if (env.STOP_KEY && i % 10 === 0 && (await redis.exists(env.STOP_KEY))) break;
    const { seq, duplicate } = await log.append(
      {
        type: "action",
        taskId: `${worker}-task`,
        actor: worker,
        data: { tool: "get_weather", input: { city: `city-${i}` }, outcome: "ok", output: { tempC: i } },
      },
      env.ONCE ? { once: `${env.ONCE}:${i}` } : {},
    );
    if (duplicate) duplicates += 1;
    else seqs.push(seq);
  }
  process.stdout.write(JSON.stringify({ worker, seqs, duplicates, elapsedMs: performance.now() - started }));
} finally {
  redis.disconnect();
}
