/**
 * One normalisation for every policy comparison. A model (or a tenant writing inputs) can spell
 * the same meaning many ways: `Production`, `" production"`, fullwidth `ｐｒｏｄ`, a zero-width
 * space inside `dele\u200bte`, Cyrillic `р` for Latin `p`. Policies compare what these
 * functions return, never the raw strings, so a rule written once holds for every spelling.
 */

/** Invisible characters (format controls, zero-width joiners, soft hyphens, variation selectors). */
const INVISIBLE = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/gu;

/**
 * Letters from other scripts that render like Latin ones and that NFKC leaves alone. Not the
 * whole Unicode confusables table: the ones that let a word such as `prod` or `delete` be typed
 * with no Latin letter at all.
 */
const LOOKALIKES: Readonly<Record<string, string>> = {
  а: "a",
  в: "b",
  с: "c",
  ԁ: "d",
  е: "e",
  һ: "h",
  і: "i",
  ј: "j",
  к: "k",
  ӏ: "l",
  м: "m",
  н: "h",
  о: "o",
  р: "p",
  ԛ: "q",
  ѕ: "s",
  т: "t",
  у: "y",
  х: "x",
  ԝ: "w",
  ѵ: "v",
  ɡ: "g",
  α: "a",
  β: "b",
  ε: "e",
  η: "n",
  ι: "i",
  κ: "k",
  ν: "v",
  ο: "o",
  ρ: "p",
  τ: "t",
  υ: "u",
  χ: "x",
  А: "A",
  В: "B",
  С: "C",
  Е: "E",
  Н: "H",
  І: "I",
  Ј: "J",
  К: "K",
  М: "M",
  О: "O",
  Р: "P",
  Ѕ: "S",
  Т: "T",
  Х: "X",
  У: "Y",
  Α: "A",
  Β: "B",
  Ε: "E",
  Η: "H",
  Ι: "I",
  Κ: "K",
  Μ: "M",
  Ν: "N",
  Ο: "O",
  Ρ: "P",
  Τ: "T",
  Υ: "Y",
  Χ: "X",
  Ζ: "Z",
};
const LOOKALIKE = new RegExp(`[${Object.keys(LOOKALIKES).join("")}]`, "gu");

/** NFKC, invisibles removed, lookalikes mapped; case kept (word splitting needs it). */
function fold(value: string): string {
  return value
    .normalize("NFKC")
    .replace(INVISIBLE, "")
    .normalize("NFKC")
    .replace(LOOKALIKE, (c) => LOOKALIKES[c] ?? c);
}

/**
 * The canonical form of a string for comparison: Unicode NFKC (fullwidth and compatibility
 * forms become plain letters), invisible characters removed, a few Cyrillic/Greek lookalikes
 * mapped to Latin, case folded, runs of whitespace collapsed to one space, trimmed.
 */
export function canonicalText(value: string): string {
  return caseFold(fold(value)).replace(/\s+/gu, " ").trim();
}

/** Full case folding where JavaScript has none: upper then lower maps `ß` to `ss`, `ı` to `i`. */
function caseFold(value: string): string {
  return value.toUpperCase().toLowerCase().normalize("NFKC");
}

/**
 * The words of an identifier or phrase, canonical: `deleteResource`, `DELETE-RESOURCE`,
 * `delete resource` and `ｄｅｌｅｔｅ_resource` all give `["delete", "resource"]`.
 */
export function textWords(value: string): string[] {
  const split = fold(value)
    .replace(/([\p{Ll}\p{N}])(\p{Lu})/gu, "$1 $2")
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, "$1 $2");
  return caseFold(split)
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
}

/**
 * The canonical form of a name (tool names, input keys): its {@link textWords} joined by `_`,
 * so case, separators (`-`, `.`, spaces, camelCase) and lookalike spellings do not matter.
 */
export function canonicalName(value: string): string {
  return textWords(value).join("_");
}
