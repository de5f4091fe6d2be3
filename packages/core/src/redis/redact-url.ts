/**
 * `url` with its passwords masked, for logs and messages: the password of the user part (any
 * form: one server, a Cluster's seed list, Sentinels; up to the last `@`, so an unescaped `@` in
 * it does not leave the rest behind) and a `sentinelPassword=` parameter.
 */
export function redactRedisUrl(url: string): string {
  return url
    .replace(/^([a-z+]+:\/\/[^:@/?#]*):[^?#]*@/i, "$1:***@")
    .replace(/([?&]sentinelPassword=)[^&#]*/gi, "$1***");
}
