/**
 * "Did you mean" for mistyped commands and flags, and safe echoing of what the user typed.
 */

/** Words longer than this get no suggestion: the distance costs length², and no name is that long. */
const MAX_WORD = 64;

/**
 * Edit distance with adjacent transpositions (optimal string alignment), so `stauts` is one
 * edit from `status`, as it is for a person typing fast.
 */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [
    i,
    ...Array<number>(b.length).fill(0),
  ]);
  const row0 = rows[0] as number[];
  for (let j = 0; j <= b.length; j++) row0[j] = j;
  for (let i = 1; i <= a.length; i++) {
    const row = rows[i] as number[];
    const prev = rows[i - 1] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, (rows[i - 2]?.[j - 2] as number) + 1);
      row[j] = d;
    }
  }
  return rows[a.length]?.[b.length] as number;
}

/**
 * The names closest to `typed`, best first (at most three, all at the best distance), or none.
 * Case is ignored; a name counts as close within one edit (names of up to 4 characters) or two,
 * or when `typed` is a prefix of it of at least 3 characters (`approv` → `approvals`).
 * `name` is what is compared, `label` what is suggested (`approve` → `approvals approve`).
 */
export function closest(typed: string, candidates: readonly { name: string; label: string }[]): string[] {
  const word = typed.toLowerCase();
  if (word.length === 0 || word.length > MAX_WORD) return [];
  const scored: { label: string; d: number }[] = [];
  for (const c of candidates) {
    const name = c.name.toLowerCase();
    const bare = name.replace(/^-+/, "");
    const typedBare = word.replace(/^-+/, "");
    const d = editDistance(word, name);
    if (d <= (bare.length <= 4 ? 1 : 2)) scored.push({ label: c.label, d });
    else if (typedBare.length >= 3 && bare.startsWith(typedBare)) scored.push({ label: c.label, d: 3 });
  }
  if (scored.length === 0) return [];
  const best = Math.min(...scored.map((s) => s.d));
  return [...new Set(scored.filter((s) => s.d === best).map((s) => s.label))].slice(0, 3);
}

/** `; did you mean "x"?` / `; did you mean "x" or "y"?`, or "" without suggestions. */
export function didYouMean(suggestions: readonly string[]): string {
  if (suggestions.length === 0) return "";
  const quoted = suggestions.map((s) => `"${s}"`);
  const last = quoted.pop() as string;
  return `; did you mean ${quoted.length > 0 ? `${quoted.join(", ")} or ${last}` : last}?`;
}

/**
 * Control characters (C0, DEL, C1 such as the one-byte CSI) and bidirectional overrides written
 * as `\u{…}` escapes. What a user (or a script fed untrusted input) typed is echoed in error
 * lines; raw, it could drive the terminal or make the line read other than it is.
 */
export function escapeControls(text: string): string {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0) as number;
    const control =
      c <= 0x1f ||
      (c >= 0x7f && c <= 0x9f) ||
      c === 0x2028 ||
      c === 0x2029 ||
      (c >= 0x202a && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069);
    out += control ? `\\u{${c.toString(16)}}` : ch;
  }
  return out;
}

/** A typed word for an error line: control characters escaped, cut at 80 characters, in quotes. */
export function shown(word: string): string {
  const cut = word.length > 80 ? `${word.slice(0, 80)}…` : word;
  return `"${escapeControls(cut)}"`;
}
