# syntax=docker/dockerfile:1.7
# One image for the Agentry worker, producer and admin CLI, chosen by the command:
#   docker run IMAGE worker | producer | agentry <command...>
# Stages: source -> manifests -> build (all deps, tsc) -> prod-deps (production deps of the
# three apps only) -> runtime (node:24 slim, non-root, no compiler, no pnpm).
# The runtime tree keeps the repo's layout under /app, so pnpm's workspace symlinks and the
# worker's default policy path (packages/governance/policies/default.yaml) hold as in the repo.
# scripts/image-smoke.sh rehearses the prod-deps and runtime stages without Docker.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS base
ENV PNPM_HOME=/pnpm \
    PATH=/pnpm:$PATH \
    COREPACK_ENABLE_DOWNLOAD_PROMPT=0
# The pnpm version comes from package.json's packageManager field. A pinned corepack, not the one
# bundled with the image's Node, so the npm registry's current signing keys are known to it.
RUN npm install --global --no-audit --no-fund corepack@0.36.0 && corepack enable
WORKDIR /repo

# Sources only (.dockerignore drops node_modules, dist, .git, tests' output).
FROM base AS source
COPY . .

# package.json files, lockfile and workspace file: the install layer changes only when they do.
FROM base AS manifests
COPY --from=source /repo /tmp/repo
RUN node /tmp/repo/scripts/image-tree.mjs manifests /tmp/repo /manifests

FROM base AS build
COPY --from=manifests /manifests/ ./
RUN --mount=type=cache,id=agentry-pnpm-store,target=/pnpm/store \
    pnpm install --frozen-lockfile
COPY --from=source /repo/ ./
RUN pnpm -r --filter "@agentry/worker..." --filter "@agentry/producer..." --filter "@agentry/admin..." --filter "!@agentry/testkit" build \
 && node scripts/image-tree.mjs runtime /repo /runtime

FROM base AS prod-deps
WORKDIR /app
COPY --from=manifests /manifests/ ./
# Keep these filters in step with scripts/image-smoke.sh.
RUN --mount=type=cache,id=agentry-pnpm-store,target=/pnpm/store \
    pnpm install --frozen-lockfile --prod --no-optional \
      --filter "@agentry/worker..." --filter "@agentry/producer..." --filter "@agentry/admin..." --filter "!@agentry/testkit"

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    AGENTRY_WORKER_PORT=9464 \
    PORT=8080
WORKDIR /app
# Owned by root, read-only for the `node` user that runs the processes.
COPY --from=prod-deps /app/ ./
COPY --from=build /runtime/ ./
COPY --from=source /repo/scripts/docker-entrypoint.sh /usr/local/bin/agentry-entrypoint
RUN chmod 0755 /usr/local/bin/agentry-entrypoint \
 && printf '#!/bin/sh\nexec /usr/local/bin/agentry-entrypoint agentry "$@"\n' > /usr/local/bin/agentry \
 && chmod 0755 /usr/local/bin/agentry
USER node
EXPOSE 8080 9464
ENTRYPOINT ["/usr/local/bin/agentry-entrypoint"]
CMD ["worker"]
