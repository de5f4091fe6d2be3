/** One message of a server-sent event stream: an event, or a comment (`: heartbeat`). */
export type SseMessage =
  { kind: "event"; event: string; id?: string; data: unknown } | { kind: "comment"; text: string };

/**
 * Reads a text/event-stream response to its end, calling `onMessage` for each message as it
 * arrives. Internal. For test use only.
 */
export async function readEventStream(
  response: Response,
  onMessage: (m: SseMessage) => void = () => undefined,
): Promise<SseMessage[]> {
  const messages: SseMessage[] = [];
  const reader = response.body?.getReader();
  if (!reader) return messages;
  const decoder = new TextDecoder();
  let buffer = "";
  const flush = (block: string) => {
    if (block.trim() === "") return;
    let event = "message";
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) {
        const m: SseMessage = { kind: "comment", text: line.slice(1).trim() };
        messages.push(m);
        onMessage(m);
      } else if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("id:")) id = line.slice(3).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (data.length > 0) {
      const m: SseMessage = {
        kind: "event",
        event,
        ...(id ? { id } : {}),
        data: JSON.parse(data.join("\n")) as unknown,
      };
      messages.push(m);
      onMessage(m);
    }
  };
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        flush(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (!(err instanceof Error && err.name === "AbortError")) throw err;
  }
  flush(buffer);
  return messages;
}
