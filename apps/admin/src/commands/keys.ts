import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { onePositional, parseCommand } from "../args.js";
import { CliError, EXIT, usageError, writeJson } from "../io.js";
import type { Command } from "./command.js";

const USAGE = "agentry keys generate <approver> [--out FILE] [--force] [--json]";

/** Approver names the approvers file accepts. */
const APPROVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]*$/;

/**
 * `agentry keys generate`: a new Ed25519 key pair. The private key (PKCS#8 PEM) goes to
 * `~/.agentry/keys/<approver>.key` (mode 0600, directories 0700) or `--out`; stdout gets
 * exactly one line `<approver>: <public key>`, so `agentry keys generate alice >> approvers`
 * enrols alice.
 */
export const keysGenerateCommand: Command = {
  path: ["keys", "generate"],
  usage: USAGE,
  summary:
    "Generate an approver's key pair; prints the `<approver>: <public key>` line for the approvers file.",
  details: "Refuses to overwrite an existing key file unless --force is given. Needs no Redis.",
  async run(ctx, argv) {
    const { values, positionals } = parseCommand(argv, {
      out: { type: "string" },
      force: { type: "boolean" },
    });
    const approver = onePositional(positionals, "approver name", USAGE);
    if (!APPROVER_NAME.test(approver)) {
      throw usageError(
        `approver names use letters, digits and . _ @ - and start with a letter or digit (got "${approver}")`,
      );
    }
    const keyFile = values.out ? resolve(values.out) : ctx.defaultKeyFile(approver);
    if (!values.out) {
      // ~/.agentry and ~/.agentry/keys hold secrets: owner only.
      const agentryDir = join(ctx.home, ".agentry");
      await mkdir(join(agentryDir, "keys"), { recursive: true, mode: 0o700 });
      await chmod(agentryDir, 0o700);
      await chmod(dirname(keyFile), 0o700);
    } else {
      await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
    }
    const { generateApproverKeyPair } = await import("@agentry/governance");
    const { publicKey, privateKey } = generateApproverKeyPair();
    try {
      await writeFile(keyFile, privateKey, { mode: 0o600, flag: values.force ? "w" : "wx" });
      await chmod(keyFile, 0o600);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === "EEXIST")
        throw new CliError(`${keyFile} already exists (use --force to replace it)`, { cause: err });
      throw new CliError(`cannot write ${keyFile}: ${e.message}`, { cause: err });
    }
    const line = `${approver}: ${publicKey}`;
    if (values.json) writeJson(ctx.io.stdout, { approver, publicKey, keyFile, line });
    else ctx.io.stdout.write(`${line}\n`);
    ctx.io.stderr.write(
      `private key written to ${keyFile} (keep it secret); add the public key line to AGENTRY_APPROVERS_FILE\n`,
    );
    return EXIT.OK;
  },
};
