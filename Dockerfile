# One image for the API, the worker, the simulator and the dev issuer (the command picks which).
# Every workspace's package.json comes first, so `npm ci` sees the whole lockfile's workspaces.
FROM node:20-bookworm-slim
WORKDIR /app
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
RUN npm ci --no-audit --no-fund
COPY . .
RUN PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma generate
RUN npm run build -w @kiln/portal
ENV HOST=0.0.0.0 PORT=8080 PRISMA_SCHEMA_ENGINE_BINARY=/app/prisma/engine/schema-engine.mjs
EXPOSE 8080
CMD ["npx", "tsx", "apps/api/src/main.ts"]
