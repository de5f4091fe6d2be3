import type { Redis } from "ioredis";

/**
 * True when the server runs a query engine with vector search (Redis 8, Redis Stack or the
 * RediSearch module). `FT._LIST` answers there and is an unknown command elsewhere;
 * `MODULE LIST` is the fallback when an ACL forbids `FT._LIST`.
 */
export async function detectVectorSearch(redis: Redis): Promise<boolean> {
  try {
    await redis.call("FT._LIST");
    return true;
  } catch {
    // Unknown command or not permitted: ask for the module list.
  }
  try {
    const modules = (await redis.call("MODULE", "LIST")) as unknown[];
    return modules.some((entry) => {
      if (!Array.isArray(entry)) return false;
      const nameAt = entry.findIndex((v) => String(v).toLowerCase() === "name");
      const name = nameAt >= 0 ? String(entry[nameAt + 1]).toLowerCase() : "";
      return name === "search" || name === "ft" || name === "searchlight";
    });
  } catch {
    return false;
  }
}
