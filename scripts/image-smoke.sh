#!/usr/bin/env bash
# Rehearses the runtime stage of the Dockerfile without Docker: assembles the image's /app tree
# in a temporary directory exactly as the Dockerfile does (manifests -> production-only
# `pnpm install` of the three apps' dependency closure -> compiled dist/ and policy files),
# checks that no development tool got in, and runs scripts/smoke-dist.mjs against that tree.
#
#   scripts/image-smoke.sh [--skip-build]
#
# What it cannot check: the base image, the non-root user, file ownership, and the Docker
# build itself (no Docker engine needed here, none used).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/agentry-image-XXXXXX")
trap 'rm -rf "$out"' EXIT

# Keep in step with the Dockerfile's prod-deps stage.
PROD_FILTERS=(--filter "@agentry/worker..." --filter "@agentry/producer..." --filter "@agentry/admin..." --filter "!@agentry/testkit")

if [ "${1:-}" != "--skip-build" ]; then (cd "$repo" && pnpm -r build); fi
node "$repo/scripts/image-tree.mjs" manifests "$repo" "$out"
(cd "$out" && pnpm install --frozen-lockfile --prod --prefer-offline --no-optional "${PROD_FILTERS[@]}" --reporter=silent)
for dev in typescript tsx vitest vite eslint esbuild turbo prettier; do
  if compgen -G "$out/node_modules/.pnpm/$dev@*" >/dev/null; then
    echo "image-smoke: development package $dev is in the production tree" >&2
    exit 1
  fi
done
node "$repo/scripts/image-tree.mjs" runtime "$repo" "$out"
echo "image-smoke: runtime tree $(du -sh "$out" | cut -f1) at $out" >&2
# The image's entrypoint selects the app: the CLI answers through it.
AGENTRY_HOME="$out" NODE_OPTIONS="" sh "$repo/scripts/docker-entrypoint.sh" agentry --help >/dev/null
node "$repo/scripts/smoke-dist.mjs" --skip-build --root "$out"
