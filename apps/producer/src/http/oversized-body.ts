import { errorCodes, type FastifyInstance } from "fastify";

/**
 * How much of a declared-oversized body is read and thrown away so that its sender gets the 413,
 * as a multiple of the body limit. Beyond it the connection is closed instead: reading a body of
 * any declared size would let one request hold the server's bandwidth.
 */
export const OVERSIZED_DRAIN_FACTOR = 8;

/**
 * Answers a body whose `content-length` is over `bodyLimit` with 413 only after reading it (up to
 * {@link OVERSIZED_DRAIN_FACTOR} times the limit, then discarded), on a connection that stays
 * open.
 *
 * Fastify's own check refuses such a body before reading it and closes the connection, so a
 * client still writing its body (fetch, curl) meets a reset (`EPIPE`) and never sees the 413 that
 * says what went wrong. Chunked bodies, which declare no length, keep Fastify's behaviour.
 */
export function answerOversizedBodies(app: FastifyInstance, bodyLimit: number): void {
  app.addHook("preParsing", async (request, reply, payload) => {
    const declared = Number(request.headers["content-length"]);
    if (!(declared > bodyLimit)) return payload;
    if (declared <= bodyLimit * OVERSIZED_DRAIN_FACTOR) {
      for await (const chunk of payload) void chunk;
    } else {
      void reply.header("connection", "close");
    }
    throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE();
  });
}
