# One image for the API, the worker, the simulator and the dev issuer (the command picks which):
# compiled JavaScript on production dependencies only. test/build.test.ts assembles the runtime
# stage's tree without Docker and runs the API, the migrations and the worker from it.

# --- build: every dependency, the Prisma client, `npm run build` (apps/*/dist, apps/portal/dist)
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Every workspace's package.json first, so `npm ci` sees the whole lockfile's workspaces (and its
# layer is reused until one of them or the lockfile changes).
COPY package.json package-lock.json ./
COPY apps/api/package.json apps/api/
COPY apps/cli/package.json apps/cli/
COPY apps/issuer/package.json apps/issuer/
COPY apps/portal/package.json apps/portal/
COPY apps/simulator/package.json apps/simulator/
COPY apps/worker/package.json apps/worker/
COPY packages/addons/package.json packages/addons/
COPY packages/client/package.json packages/client/
COPY packages/db/package.json packages/db/
COPY packages/domain/package.json packages/domain/
COPY packages/drivers/package.json packages/drivers/
COPY packages/jobs/package.json packages/jobs/
COPY packages/pki/package.json packages/pki/
COPY packages/telemetry/package.json packages/telemetry/
RUN npm ci --no-audit --no-fund
COPY . .
RUN PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma generate
RUN npm run build

# --- runtime: production dependencies, the built JavaScript and what it reads at run time
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/apps/api/package.json apps/api/
COPY --from=build /app/apps/cli/package.json apps/cli/
COPY --from=build /app/apps/issuer/package.json apps/issuer/
COPY --from=build /app/apps/portal/package.json apps/portal/
COPY --from=build /app/apps/simulator/package.json apps/simulator/
COPY --from=build /app/apps/worker/package.json apps/worker/
COPY --from=build /app/packages/addons/package.json packages/addons/
COPY --from=build /app/packages/client/package.json packages/client/
COPY --from=build /app/packages/db/package.json packages/db/
COPY --from=build /app/packages/domain/package.json packages/domain/
COPY --from=build /app/packages/drivers/package.json packages/drivers/
COPY --from=build /app/packages/jobs/package.json packages/jobs/
COPY --from=build /app/packages/pki/package.json packages/pki/
COPY --from=build /app/packages/telemetry/package.json packages/telemetry/
# No install scripts: nothing at run time needs one (@prisma/engines' would download native engines).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# The bundles (the @kiln/* workspaces and the generated Prisma client are inside them) ...
COPY --from=build /app/apps/api/dist apps/api/dist
COPY --from=build /app/apps/worker/dist apps/worker/dist
COPY --from=build /app/apps/simulator/dist apps/simulator/dist
COPY --from=build /app/apps/issuer/dist apps/issuer/dist
# ... the portal the API serves under /portal/, and the migrations apps/api/dist/migrate.js applies.
COPY --from=build /app/apps/portal/dist apps/portal/dist
COPY --from=build /app/prisma/schema.prisma prisma/
COPY --from=build /app/prisma/migrations prisma/migrations
USER node
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "--enable-source-maps", "apps/api/dist/main.js"]
